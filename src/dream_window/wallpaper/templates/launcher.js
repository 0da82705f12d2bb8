// Dream Window live wallpaper: find the running service, then hand over to its viewer.
//
// The wallpaper host (Lively, Wallpaper Engine) loads this page from its own folder. It asks for
// the viewer's icon as an image (an image may be loaded from any page, file:// included, and
// the viewer serves it without a token); when it loads, the page navigates to the viewer in
// wallpaper mode, which then runs on the viewer's own origin under its own security rules.
// When it does not load, the page says Dream Window is not running and tries again.
"use strict";

(() => {
  const root = document.documentElement;
  const viewer = root.dataset.viewer.replace(/\/?$/, "/");
  const FITS = ["cover", "contain"];
  let fit = FITS.includes(root.dataset.fit) ? root.dataset.fit : "cover";
  let retryMs = 1000;

  // The hosts' settings panels (project.json / LivelyProperties.json offer "fit").
  function fitFromHost(value) {
    const v = typeof value === "number" ? FITS[value] : String(value).toLowerCase();
    if (FITS.includes(v)) fit = v;
  }
  window.wallpaperPropertyListener = {
    applyUserProperties(props) { if (props && props.fit) fitFromHost(props.fit.value); },
  };
  window.livelyPropertyListener = (name, value) => { if (name === "fit") fitFromHost(value); };

  function target() {
    return `${viewer}?wallpaper=1&fit=${encodeURIComponent(fit)}`;
  }

  function down() {
    document.getElementById("where").textContent = viewer;
    document.getElementById("down").hidden = false;
    setTimeout(probe, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  }

  function probe() {
    if (document.hidden) {  // nobody is looking: try again once somebody is
      document.addEventListener("visibilitychange", probe, { once: true });
      return;
    }
    const img = new Image();
    img.onload = () => location.replace(target());
    img.onerror = down;
    img.src = `${viewer}static/icon.svg?probe=${Date.now()}`;
  }

  probe();
})();
