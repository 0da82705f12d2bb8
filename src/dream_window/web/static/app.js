// Dream Window viewer: live frames with crossfades, status overlay and controls.
// Vanilla JS, no dependencies; talks to the service over one WebSocket (/api/live) and POSTs.
// Frames arrive on that socket as binary messages (the PNG with a small JSON header, see the
// server's web/live.py); each is decoded off the main thread into the hidden one of two layers
// and swapped in only once decoded. Frames that come faster than the crossfade are cut, not
// faded; a frame that arrives while one is decoding replaces any other waiting (never a queue),
// and the page asks for the next one only when it has room ("ready").
//
// URL options: ?wallpaper=1 (a live wallpaper: no controls, no overlay, no cursor, cover by
// default) and ?fit=cover|contain. The viewer's own fit choice is remembered in localStorage.
// While the page is hidden (Page Visibility API) it tells the service, which then sends no
// pictures; nothing is fetched and nothing animates, and the newest frame is shown as soon as it
// is visible again.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const layers = [$("layer-a"), $("layer-b")];
  // The object URL each layer shows (null: a server URL or nothing), revoked when replaced.
  const layerUrls = [null, null];
  // The states in which the backend cannot do what was chosen: the page says why in a banner.
  const TROUBLE = ["waiting", "degraded"];
  const params = new URLSearchParams(location.search);
  const WALLPAPER = ["1", "true", "yes", "on"].includes((params.get("wallpaper") || "").toLowerCase());
  // cover: the picture fills the screen (edges cropped); contain: all of it, letterboxed.
  const FITS = ["cover", "contain"];
  const FIT_KEY = "dream-window.fit";

  const view = {
    fadeMs: 1200,
    front: -1,         // index into `layers` of the visible layer, -1 before the first frame
    shownIndex: 0,     // frame number on screen (or fading in)
    pending: null,     // newest frame that arrived during a fade; older ones are skipped
    fading: false,
    status: null,
    serverId: null,    // pid + start time: tells a restart from a dropped connection
    showPreviews: false,
    // The prompt of the frame on screen, and the one frames are being made for now: they differ
    // from a typed prompt (or a skip) until its first frame has faded in.
    shownPrompt: null,
    nextPrompt: null,
    hold: null,        // null, or {forever: bool, deadline: ms since epoch | null}
    modeWanted: null,  // a mode switch on its way to the server: statuses sent before it are stale
    fit: "contain",
    unseen: null,      // the newest frame that arrived while the page was hidden (not fetched yet)
    lastFrame: null,   // {index, t} of the last frame announced, t when the service published it
    gapsMs: [Infinity, Infinity],  // the last two frame intervals: closer than the fade, frames are cut
    ws: null,          // the live socket, to tell the service when the page is hidden
  };

  // --- fit and wallpaper mode ----------------------------------------------------------------

  function storedFit() {
    try { return localStorage.getItem(FIT_KEY); } catch { return null; }  // storage may be off
  }

  function initialFit() {
    const asked = (params.get("fit") || "").toLowerCase();
    if (FITS.includes(asked)) return asked;
    if (WALLPAPER) return "cover";
    const saved = storedFit();
    return FITS.includes(saved) ? saved : "contain";
  }

  function setFit(fit, { remember = false } = {}) {
    if (!FITS.includes(fit)) return;
    view.fit = fit;
    document.documentElement.dataset.fit = fit;
    const btn = $("btn-fit");
    btn.textContent = fit === "cover" ? "Cover" : "Contain";
    btn.setAttribute("aria-pressed", String(fit === "cover"));
    if (remember && !WALLPAPER) {
      try { localStorage.setItem(FIT_KEY, fit); } catch { /* not remembered: still applied */ }
    }
  }

  function toggleFit() {
    setFit(view.fit === "cover" ? "contain" : "cover", { remember: true });
    toast(view.fit === "cover" ? "Cover: the picture fills the window" : "Contain: the whole picture, letterboxed");
  }

  // The wallpaper hosts' own settings panels: Wallpaper Engine calls applyUserProperties with
  // {fit: {value: "cover"}}, Lively calls livelyPropertyListener("fit", index of the dropdown item).
  function fitFromHost(value) {
    if (typeof value === "number") setFit(FITS[value]);
    else if (typeof value === "string") setFit(value.toLowerCase());
  }

  if (WALLPAPER) {
    document.documentElement.classList.add("wallpaper");
    window.wallpaperPropertyListener = {
      applyUserProperties(props) { if (props && props.fit) fitFromHost(props.fit.value); },
    };
    window.livelyPropertyListener = (name, value) => { if (name === "fit") fitFromHost(value); };
  }
  setFit(initialFit());

  // --- frames and the crossfade -------------------------------------------------------------

  function transitionDone(el, ms) {
    // transitionend is not guaranteed (hidden tab, ms = 0): a timer backs it up.
    return new Promise((resolve) => {
      let done = false;
      const finish = () => { if (!done) { done = true; el.removeEventListener("transitionend", finish); resolve(); } };
      el.addEventListener("transitionend", finish);
      setTimeout(finish, ms + 80);
    });
  }

  function setSource(i, frame) {
    // A pushed frame is shown from its bytes; a frame announced by URL (hello, a hidden page's
    // newest) is fetched. The object URL this layer showed before is given back.
    const old = layerUrls[i];
    const url = frame.blob ? URL.createObjectURL(frame.blob) : frame.url;
    layerUrls[i] = frame.blob ? url : null;
    layers[i].src = url;
    if (old) URL.revokeObjectURL(old);
  }

  function arrived(frame) {
    // The dream's cadence, from when the service published each frame (t_ms), per frame number:
    // not from when frames reach this page, which its own pace decides (it asks for the next only
    // when it has room, and a fade makes it slow). Two intervals, so one late frame followed by
    // an early one (a busy machine) still fades.
    const t = typeof frame.t_ms === "number" ? frame.t_ms : performance.now();
    const last = view.lastFrame;
    if (last && frame.index > last.index) {
      view.gapsMs = [view.gapsMs[1], (t - last.t) / (frame.index - last.index)];
    }
    view.lastFrame = { index: frame.index, t };
    return frame;
  }

  async function showFrame(frame, instant = false) {
    if (!frame || frame.index <= view.shownIndex) return;
    if (document.hidden) {
      // Nobody can see it: fetch nothing, keep only the newest for when the page is shown again.
      if (!view.unseen || frame.index > view.unseen.index) view.unseen = frame;
      return;
    }
    if (view.fading) {
      if (!view.pending || frame.index > view.pending.index) view.pending = frame;
      return;
    }
    view.fading = true;
    try {
      const side = view.front === 0 ? 1 : 0;
      const incoming = layers[side];
      const outgoing = view.front >= 0 ? layers[view.front] : null;
      incoming.style.transition = "none";
      incoming.style.opacity = "0";
      setSource(side, frame);
      try {
        await incoming.decode();  // never show a half-decoded picture
      } catch (err) {
        console.warn("frame", frame.index, "could not be loaded", err);
        return;
      }
      if (frame.index <= view.shownIndex) return;
      view.shownIndex = frame.index;
      incoming.dataset.index = String(frame.index);
      // Now, not when the message came: until this frame fades in, the old prompt is on screen.
      showPrompt(frame.prompt);
      showFrameFacts(frame);
      incoming.style.zIndex = "2";
      if (outgoing) outgoing.style.zIndex = "1";
      $("empty").hidden = true;
      // Frames closer together than the fade (a live cadence) are cut: a fade would never finish.
      const live = Math.max(...view.gapsMs) < view.fadeMs;
      const ms = instant || !outgoing || live ? 0 : view.fadeMs;
      if (ms > 0) void incoming.offsetWidth;  // commit opacity 0 so the change below animates
      incoming.style.transition = ms > 0 ? `opacity ${ms}ms ease-in-out` : "none";
      incoming.style.opacity = "1";
      view.front = side;
      if (ms > 0) await transitionDone(incoming, ms);
      // The old frame stayed fully opaque underneath, so the picture never dims mid-fade;
      // now that it is covered it is hidden, ready to receive the next frame.
      if (outgoing) {
        outgoing.style.transition = "none";
        outgoing.style.opacity = "0";
      }
    } finally {
      view.fading = false;
      const next = view.pending;
      view.pending = null;
      if (next) showFrame(next);
      tellReady();
    }
  }

  // --- status overlay -----------------------------------------------------------------------

  function setStatus(s) {
    if (!s) return;
    view.status = s;
    const state = $("state");
    state.textContent = s.state;
    state.className = `badge ${s.state}`;
    $("reason").textContent = (s.pause_reasons || []).join("; ");
    setHealth(s);
    // s.current_prompt is not shown here: a frame's status arrives before its picture has decoded.
    if ("next_prompt" in s) setNext(s.next_prompt);
    if ("prompt_hold" in s) setHold(holdFromStatus(s.prompt_hold));
    $("fpm").textContent = s.frames_per_minute ? Number(s.frames_per_minute).toFixed(1) : "–";
    // The built-in engine's name already says "not AI".
    $("backend").textContent = s.backend || "–";
    $("mode").textContent = s.mode || "–";
    setGpuDuty(s.comfyui);
    setModes(s.modes, s.mode);
    const paused = s.state === "paused";
    const userPaused = (s.pause_reasons || []).includes("user");
    const btn = $("btn-pause");
    btn.textContent = userPaused ? "Resume" : "Pause";
    btn.classList.toggle("on", userPaused);
    document.title = paused || TROUBLE.includes(s.state) ? `Dream Window (${s.state})` : "Dream Window";
    setProgress(s.progress);
  }

  function setGpuDuty(comfyui) {
    // Only while ComfyUI makes the frames: the built-in engine runs on the CPU.
    const duty = comfyui && comfyui.gpu_duty;
    const known = Boolean(duty) && typeof duty.fraction === "number";
    for (const el of document.querySelectorAll(".gpu-duty")) el.hidden = !known;
    if (!known) return;
    const pct = Math.round(100 * duty.fraction);
    $("gpu-duty").textContent = `${pct}% of the last ${Math.round(duty.window_s)} s`;
  }

  // --- what is wrong with the backend: a banner, not only the overlay --------------------------

  function setHealth(s) {
    // Shown while no frame can be made (waiting) or they come from a stand-in (degraded), in the
    // service's own words; a status without trouble (or none at all: disconnected) hides it.
    const el = $("health");
    const state = s && s.state;
    if (!TROUBLE.includes(state)) { el.hidden = true; return; }
    const health = s.backend_health || {};
    const reason = health.reason
      || (state === "waiting" ? "no frame can be made now" : "the frames do not come from the backend you chose");
    el.className = `health ${state}`;
    $("health-state").textContent = state;
    $("health-state").className = `badge ${state}`;
    $("health-reason").textContent = reason;  // textContent: a reason is text, never markup
    const since = health.since ? new Date(health.since) : null;
    $("health-since").textContent = since && !Number.isNaN(since.getTime()) ? `since ${since.toLocaleTimeString()}` : "";
    el.hidden = false;
  }

  // --- prompts: on screen, next, held --------------------------------------------------------

  function showPrompt(text) {
    view.shownPrompt = text || null;
    $("prompt").textContent = text || "";
    renderNext();
  }

  function showFrameFacts(frame) {
    $("frame-no").textContent = `#${frame.index}`;
    $("frame-kind").textContent = frame.kind ? ` · ${frame.kind}` : "";
    $("seed").textContent = frame.seed === undefined || frame.seed === null ? "–" : String(frame.seed);
  }

  function setNext(text) {
    view.nextPrompt = text || null;
    renderNext();
  }

  function renderNext() {
    const next = view.nextPrompt;
    const el = $("next-prompt");
    el.hidden = !next || next === view.shownPrompt;
    $("next-text").textContent = next || "";
  }

  function holdFromStatus(h) {
    if (!h) return null;
    if (h.until_skipped) return { forever: true, deadline: null };
    // remaining_s is relative, so a browser clock that is off does not skew it; `until` backs it up.
    if (typeof h.remaining_s === "number") return { forever: false, deadline: Date.now() + 1000 * h.remaining_s };
    const until = h.until ? Date.parse(h.until) : NaN;
    return Number.isNaN(until) ? { forever: true, deadline: null } : { forever: false, deadline: until };
  }

  function holdFromPrompt(msg) {
    if (!msg.held) return null;
    if (typeof msg.held_s !== "number") return { forever: true, deadline: null };
    return { forever: false, deadline: Date.now() + 1000 * msg.held_s };
  }

  function setHold(hold) {
    view.hold = hold;
    renderHold();
  }

  function renderHold() {
    const el = $("hold");
    const hold = view.hold;
    el.hidden = !hold;
    if (!hold) return;
    if (hold.forever) {
      el.textContent = "held until skip";
      el.title = "The prompt you typed holds until you skip it";
      return;
    }
    const left = Math.max(0, hold.deadline - Date.now());
    el.textContent = `held · ${roughly(left)}`;
    el.title = `The prompt you typed holds until ${new Date(hold.deadline).toLocaleTimeString()}, or until you skip it`;
  }

  function roughly(ms) {
    const min = ms / 60000;
    if (min < 1) return "<1 min";
    if (min < 90) return `${Math.ceil(min)} min`;
    if (min < 48 * 60) return `${Math.round(min / 60)} h`;
    return `${Math.round(min / (24 * 60))} d`;
  }

  setInterval(() => { if (!document.hidden) renderHold(); }, 10000);  // a coarse countdown

  // --- modes --------------------------------------------------------------------------------

  function setModes(modes, current) {
    const sel = $("mode-select");
    if (Array.isArray(modes)) {
      const have = [...sel.options].map((o) => o.value);
      if (have.join("\n") !== modes.join("\n")) {
        sel.replaceChildren(...modes.map((name) => new Option(name, name)));
      }
      sel.hidden = modes.length < 2;
    }
    if (view.modeWanted !== null) return;  // this status may predate the switch asked for
    if (current && sel.value !== current) sel.value = current;
  }

  async function switchMode(name) {
    const current = view.status && view.status.mode;
    if (!name || name === current) return;
    view.modeWanted = name;
    $("mode-select").value = name;
    let r = null;
    try {
      r = await post("mode", { mode: name });
    } finally {
      view.modeWanted = null;
    }
    if (r) {
      if (view.status) view.status.mode = r.mode;
      $("mode").textContent = r.mode;
      toast(`Mode: ${r.mode} (from the next frame)`, 2500);
    }
    setModes(null, view.status && view.status.mode);
  }

  function cycleMode() {
    const modes = (view.status && view.status.modes) || [];
    if (modes.length < 2) return;
    const at = modes.indexOf(view.modeWanted || view.status.mode);
    switchMode(modes[(at + 1) % modes.length]);
  }

  function setProgress(p) {
    const pct = p && p.max ? Math.min(100, (100 * p.value) / p.max) : 0;
    $("progress-bar").style.width = `${pct}%`;
  }

  let toastTimer = 0;
  function toast(text, ms = 2200) {
    const t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, ms);
  }

  let bannerTimer = 0;
  function banner(text, { bad = false, ms = 0 } = {}) {
    const b = $("conn");
    clearTimeout(bannerTimer);
    // A wallpaper says only what needs doing: that the service is not running.
    if (!text || (WALLPAPER && !bad)) { b.hidden = true; return; }
    b.textContent = text;
    b.classList.toggle("bad", bad);
    b.hidden = false;
    if (ms) bannerTimer = setTimeout(() => { b.hidden = true; }, ms);
  }

  // --- live connection ----------------------------------------------------------------------

  let retryMs = 500;
  let everConnected = false;
  let lostAt = 0;

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/api/live?frames=binary`);
    ws.binaryType = "arraybuffer";
    view.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      retryMs = 500;
      if (document.hidden) tellVisibility();
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = typeof ev.data === "string" ? JSON.parse(ev.data, keepSeeds) : pushedFrame(ev.data);
      } catch { return; }
      handle(msg);
    };
    ws.onclose = async () => {
      if (view.ws === ws) view.ws = null;
      if (!opened && !everConnected && (await needsToken())) {
        banner("This viewer needs its access token: open the URL printed by `dream-window run`.", { bad: true });
        setTimeout(connect, 5000);
        return;
      }
      if (opened || !lostAt) lostAt = Date.now();
      // The socket is the service: without it nothing the page last heard still holds.
      $("state").textContent = "not running";
      $("state").className = "badge offline";
      setHealth(null);
      banner(
        WALLPAPER
          ? "Dream Window is not running (service not running) — start it with `dream-window run`; reconnecting…"
          : "Dream Window is not running (service not running) — reconnecting…",
        { bad: true },
      );
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  const utf8 = new TextDecoder();

  function pushedFrame(buffer) {
    // [u32 big-endian header length][JSON header][PNG]: one message, one frame.
    const n = new DataView(buffer).getUint32(0);
    const header = JSON.parse(utf8.decode(new Uint8Array(buffer, 4, n)), keepSeeds);
    header.blob = new Blob([new Uint8Array(buffer, 4 + n)], { type: "image/png" });
    return header;
  }

  function tellReady() {
    // Pull, not push: the service sends the next (newest) picture only once this page has room
    // for it, one decoding and none waiting, so a page slower than the dream is never sent a
    // backlog it would only drop.
    const ws = view.ws;
    if (!view.pending && ws && ws.readyState === WebSocket.OPEN) ws.send('{"type":"ready"}');
  }

  function tellVisibility() {
    const ws = view.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "visibility", hidden: document.hidden }));
  }

  async function needsToken() {
    try { return (await fetch("/api/status", { credentials: "same-origin" })).status === 401; }
    catch { return false; }
  }

  function withPrompt(frame, status) {
    // An older server sends no prompt with the frame; its status then says what is on screen.
    if (typeof frame.prompt === "string") return frame;
    return { ...frame, prompt: (status && status.current_prompt) || "" };
  }

  function keepSeeds(key, value, context) {
    // Seeds are 64-bit: past 2^53 a JS number rounds them, so keep their digits as the server
    // wrote them (JSON.parse source text access); a browser without it shows no seed at all.
    if (key !== "seed" || typeof value !== "number" || Number.isSafeInteger(value)) return value;
    return context && typeof context.source === "string" ? context.source : null;
  }

  function handle(msg) {
    switch (msg.type) {
      case "hello": {
        view.fadeMs = Number(msg.crossfade_ms) || 0;
        document.documentElement.style.setProperty("--fade", `${view.fadeMs}ms`);
        view.showPreviews = Boolean(msg.show_previews);
        const id = `${msg.status.pid}@${msg.status.started_at}`;
        if (everConnected) {
          banner(id !== view.serverId ? "Dream Window restarted — reconnected" : "Reconnected", { ms: 2500 });
        } else {
          banner("");
        }
        everConnected = true;
        lostAt = 0;
        view.lastFrame = null;  // a restarted service's clock is another one
        view.serverId = id;
        setStatus(msg.status);
        if (msg.frame) showFrame(withPrompt(msg.frame, msg.status), view.front < 0);
        break;
      }
      case "frame":
        if (msg.status) setStatus(msg.status);  // (an older server sent its status with each frame)
        setProgress(null);
        $("preview").hidden = true;
        showFrame(arrived(withPrompt(msg, msg.status || view.status)));
        tellReady();
        break;
      case "status":
        setStatus(msg.status);
        break;
      case "state":
        setStatus(msg.status);
        break;
      case "prompt":
        // What frames are made for next: it reaches #prompt with the first frame made for it.
        setNext(msg.prompt);
        setHold(holdFromPrompt(msg));
        break;
      case "progress":
        setProgress(msg);
        break;
      case "preview":
        if (view.showPreviews && !document.hidden) {
          const p = $("preview");
          p.src = `data:${msg.mime};base64,${msg.data}`;
          p.hidden = false;
        }
        break;
      case "injection":
        toast(`Remembering: ${msg.label}`);
        break;
      default:
        break;
    }
  }

  // --- controls -----------------------------------------------------------------------------

  async function post(path, body) {
    let resp;
    try {
      resp = await fetch(`/api/${path}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body || {}),
      });
    } catch {
      toast("Dream Window is not reachable");
      return null;
    }
    let data = {};
    try { data = await resp.json(); } catch { /* empty body */ }
    if (!resp.ok) {
      toast(data.error || `${path} failed (${resp.status})`, 4000);
      return null;
    }
    return data;
  }

  async function togglePause() {
    const userPaused = view.status && (view.status.pause_reasons || []).includes("user");
    const r = await post(userPaused ? "resume" : "pause");
    if (r) toast(userPaused ? "Resumed" : "Paused");
  }

  async function nextPrompt() {
    const r = await post("skip");
    if (r) toast(`Next: ${r.next_prompt}${onItsWay(r)}`, 3000);
  }

  function onItsWay(r) {
    return r.state === "paused" ? " (once you resume)" : "";
  }

  async function rate(kind) {
    const index = view.shownIndex;
    if (!index) return;
    const r = await post(kind, { index });
    if (r) toast(kind === "like" ? `Liked frame #${index}` : `Disliked frame #${index}`);
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(() => toast("Fullscreen is not allowed here"));
  }

  function toggle(id, force) {
    const el = $(id);
    el.hidden = force === undefined ? !el.hidden : !force;
    if (id === "overlay") $("btn-info").classList.toggle("on", !el.hidden);
  }

  $("btn-pause").addEventListener("click", togglePause);
  $("btn-next").addEventListener("click", nextPrompt);
  $("btn-like").addEventListener("click", () => rate("like"));
  $("btn-dislike").addEventListener("click", () => rate("dislike"));
  $("btn-info").addEventListener("click", () => toggle("overlay"));
  $("btn-full").addEventListener("click", toggleFullscreen);
  $("btn-help").addEventListener("click", () => toggle("help"));
  $("btn-fit").addEventListener("click", toggleFit);
  $("mode-select").addEventListener("change", (ev) => {
    ev.target.blur();  // back to the shortcuts, and let the controls hide again
    switchMode(ev.target.value);
  });
  $("prompt-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("prompt-input");
    const text = input.value.trim();
    if (!text) return;
    const r = await post("prompt", { prompt: text });
    if (r) {
      input.value = "";
      input.blur();
      toast(`On its way: the next frames dream of it${onItsWay(r)}`, 3000);
    }
  });

  document.addEventListener("keydown", (ev) => {
    if (WALLPAPER) return;  // a wallpaper has no controls
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const actions = {
      " ": togglePause, n: nextPrompt, ArrowRight: nextPrompt, l: () => rate("like"), d: () => rate("dislike"),
      i: () => toggle("overlay"), f: toggleFullscreen, "?": () => toggle("help"), h: () => toggle("help"),
      c: toggleFit,
      p: () => { wake(); $("prompt-input").focus(); }, m: cycleMode,
      Escape: () => { toggle("help", false); toggle("overlay", false); },
    };
    const fn = actions[ev.key] || actions[ev.key.toLowerCase()];
    if (fn) { ev.preventDefault(); fn(); }
  });

  // Controls and cursor hide after a few idle seconds (a picture on the wall, not an app).
  let idleTimer = 0;
  function wake() {
    document.body.classList.remove("idle");
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (!document.activeElement || document.activeElement === document.body) document.body.classList.add("idle");
    }, 3000);
  }
  for (const ev of ["mousemove", "mousedown", "touchstart", "keydown"]) document.addEventListener(ev, wake, { passive: true });

  // Hidden (minimised, another tab, a wallpaper host that hides it): showFrame fetches nothing.
  // Visible again: the newest frame that came meanwhile fades in at once, no backlog.
  document.addEventListener("visibilitychange", () => {
    tellVisibility();
    if (document.hidden) return;
    const frame = view.unseen;
    view.unseen = null;
    renderHold();
    if (frame) showFrame(frame);
  });

  wake();
  banner("Connecting…");
  connect();
})();
