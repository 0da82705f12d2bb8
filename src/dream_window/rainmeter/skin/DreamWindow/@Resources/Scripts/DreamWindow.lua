-- Dream Window skin logic (Rainmeter Lua, read by [MeasureDream]).
--
-- Encoding: this file is installed UTF-16 LE with a byte-order mark, which is what makes Rainmeter
-- run it as a Unicode script: every option, variable and file it is handed arrives as UTF-8, and
-- every string it returns or bangs is read as UTF-8 (without the BOM: the ANSI code page, and the
-- middle dot of the status line shows as two wrong characters). The status is read with dofile, not io.open:
-- Rainmeter's dofile opens the file with the wide (Unicode) API, while io.open is the C library's
-- fopen, which fails for any non-ASCII path in a Unicode script. The frames are shown by image
-- meters, which open their files with the wide API too.
--
-- Every tick: read status.lua (written atomically by dream-window, so it is never half a file),
-- publish the status line as this measure's string value, and when FrameName changes load the
-- new frame into the hidden layer and start the crossfade:
--   * bottom layer showing: the new frame goes into FrameB (top) at alpha 0, which fades in;
--   * top layer showing: the new frame goes into FrameA (bottom, always opaque), FrameB fades out.
-- Only FrameB's alpha moves, so the picture never dims halfway. While a fade runs, newer frames
-- wait for the next tick; a skipped frame is never shown late.
--
-- A stale status means dream-window is gone. While it lives, it rewrites the status at least
-- every Heartbeat seconds (5), frames or not, with UpdatedEpoch = Unix seconds of that write;
-- os.time() is Unix seconds too (UTC-based, on Windows as on Linux), so their difference is the
-- file's age whatever the time zone. The skin shows "stopped" when the age is over 3 intervals,
-- an interval being the longer of Heartbeat and this skin's own tick (UpdateMs): 3 x max(5 s,
-- 0.5 s) = 15 s by default. A living service's file is never much older than one heartbeat (plus
-- a second of rounding), so three leave room for a write held up by a busy disk or a reader
-- holding the file; and a skin slowed down below the heartbeat judges on no fewer than three
-- of its own looks. A file from the future (the clock was set back) counts as fresh; a status
-- without UpdatedEpoch (an older dream-window) is trusted as it says.
--
-- The state shown is published as the skin variable DreamState (the status State, or
-- "stopped" when stale or missing); waiting, degraded and stopped draw the status line in
-- AlertColor instead of TextColor. The line itself is clipped; its tooltip shows all of it.

local statusFile, framesFolder
local lastName = nil
local topShowing = false
local busyTicks = 0
local fadeTicks = 1
local tickS = 0.5
local shownState = nil
local retryAt = 0        -- after a failed read, the next try (os.time): one log line per 10 s at most
local pending = {}       -- click name -> os.time() it was started
local notice = nil       -- {text = ..., untilTime = ...}: a failed click, on the status line a while
local NOTICE_S = 6
local CLICK_TIMEOUT_S = 12

function Initialize()
  statusFile = SELF:GetOption('StatusFile')
  framesFolder = SELF:GetOption('FramesFolder')
  local fadeMs = (tonumber(SKIN:GetVariable('FadeSteps')) or 12) * (tonumber(SKIN:GetVariable('FadeStepMs')) or 40)
  local tickMs = tonumber(SKIN:GetVariable('UpdateMs')) or 500
  fadeTicks = math.max(1, math.ceil(fadeMs / tickMs))
  tickS = tickMs / 1000
end

-- The status as a table of key -> string, or nil when there is none (yet). Rainmeter's dofile
-- logs a line when the file cannot be opened; after a miss the next try waits 10 s.
local function readStatus(path)
  if os.time() < retryAt then return nil end
  local ok, status = pcall(dofile, path)
  if ok and type(status) == 'table' then return status end
  retryAt = os.time() + 10
  return nil
end

local function field(status, key)
  return status[key] or ''
end

local function show(path)
  if not topShowing then
    SKIN:Bang('!SetVariable', 'FrameB', path)
    SKIN:Bang('!SetVariable', 'AlphaB', '0')
    SKIN:Bang('!UpdateMeter', 'MeterFrameB')
    SKIN:Bang('!CommandMeasure', 'MeasureFade', 'Stop 2')
    SKIN:Bang('!CommandMeasure', 'MeasureFade', 'Execute 1')
  else
    SKIN:Bang('!SetVariable', 'FrameA', path)
    SKIN:Bang('!UpdateMeter', 'MeterFrameA')
    SKIN:Bang('!CommandMeasure', 'MeasureFade', 'Stop 1')
    SKIN:Bang('!CommandMeasure', 'MeasureFade', 'Execute 2')
  end
  topShowing = not topShowing
  busyTicks = fadeTicks
end

-- Seconds since the status was written when that is more than 3 intervals (see the top), else nil.
local function staleFor(status)
  local written = tonumber(field(status, 'UpdatedEpoch'))
  if not written then return nil end
  local heartbeat = tonumber(field(status, 'Heartbeat')) or 5
  local age = os.time() - written
  if age > 3 * math.max(heartbeat, tickS) then return age end
  return nil
end

local function roughly(seconds)
  if seconds < 120 then return string.format('%d s', seconds) end
  if seconds < 7200 then return string.format('%d min', math.floor(seconds / 60)) end
  if seconds < 172800 then return string.format('%d h', math.floor(seconds / 3600)) end
  return string.format('%d days', math.floor(seconds / 86400))
end

local function setState(state)
  if state == shownState then return end
  shownState = state
  SKIN:Bang('!SetVariable', 'DreamState', state)
  local alert = state == 'waiting' or state == 'degraded' or state == 'stopped'
  local color = alert and SKIN:GetVariable('AlertColor') or SKIN:GetVariable('TextColor')
  SKIN:Bang('!SetVariable', 'StatusColor', color)
end

-- --- clicks: run curl through a RunCommand measure, say on the status line when it fails --------

local function label(name)
  if name == 'Pause' then return SKIN:GetVariable('PauseAction') or 'pause' end
  return string.lower(name)
end

local function say(text)
  notice = {text = text, untilTime = os.time() + NOTICE_S}
end

-- Called by the skin's click actions: Click('Pause'), Click('Skip'), Click('Like').
function Click(name)
  pending[name] = os.time()
  SKIN:Bang('!CommandMeasure', 'Measure' .. name, 'Run')
end

-- What went wrong with a finished click, or nil. value: RunCommand's number value (1: curl ran,
-- 100 and up: RunCommand's own error, 103: curl.exe could not be started); output: curl's.
local function clickProblem(name, value, output)
  local what = label(name) .. ' failed: '
  if value == 103 then
    return what .. 'curl.exe not found (Windows 10 1803 or later has it)'
  end
  if value ~= nil and value >= 100 then
    return what .. 'RunCommand error ' .. string.format('%d', value)
  end
  local code = tonumber(string.match(output or '', 'HTTP (%d%d%d)'))
  local api = SKIN:GetVariable('ApiUrl') or 'the control API'
  if code == nil or code == 0 then
    return what .. 'nothing answers at ' .. api .. ' (is dream-window running with viewer.enabled?)'
  end
  if code == 401 or code == 403 then
    return what .. 'refused (HTTP ' .. code .. '): set Token in Settings.inc'
  end
  if code < 200 or code > 299 then
    return what .. 'dream-window answered HTTP ' .. code
  end
  return nil
end

-- Called by each RunCommand measure's FinishAction: Finished('Pause') ...
function Finished(name)
  pending[name] = nil
  local measure = SKIN:GetMeasure('Measure' .. name)
  local problem
  if measure then
    problem = clickProblem(name, measure:GetValue(), measure:GetStringValue())
  else
    problem = label(name) .. ' failed: no measure Measure' .. name
  end
  if problem then say(problem) end
end

-- A click whose curl never started (RunCommand may not call FinishAction then) or never ended.
local function checkPending()
  for name, started in pairs(pending) do
    local measure = SKIN:GetMeasure('Measure' .. name)
    local value = measure and measure:GetValue() or nil
    if value ~= nil and value >= 100 then
      Finished(name)
    elseif os.time() - started > CLICK_TIMEOUT_S then
      pending[name] = nil
      say(label(name) .. ' failed: no answer in ' .. CLICK_TIMEOUT_S .. ' s')
    end
  end
end

local function noticeText()
  if notice and os.time() <= notice.untilTime then return notice.text end
  notice = nil
  return nil
end

-- The line for the status as it is (and the state it shows).
local function statusLine()
  local status = readStatus(statusFile)
  if not status then
    setState('stopped')
    return 'dream-window is not running (no ' .. statusFile .. ')'
  end
  SKIN:Bang('!SetVariable', 'PauseAction', field(status, 'UserPaused') == '1' and 'resume' or 'pause')
  local name = field(status, 'FrameName')
  if name ~= '' and name ~= lastName and busyTicks == 0 then
    -- (written before the status that names it: no need to look for it first)
    show(framesFolder .. name)
    lastName = name
  end
  -- (the last frame stays on screen when the service is gone; only the words change)
  local age = staleFor(status)
  if age then
    setState('stopped')
    return 'stopped - dream-window is not running (last update ' .. roughly(age) .. ' ago)'
  end
  local state = field(status, 'State')
  setState(state)
  if state == 'stopped' then
    return 'stopped - ' .. field(status, 'Prompt')
  end
  return field(status, 'StatusLine')
end

function Update()
  if busyTicks > 0 then busyTicks = busyTicks - 1 end
  checkPending()
  local line = statusLine()
  local text = noticeText()
  if text then
    SKIN:Bang('!SetVariable', 'StatusColor', SKIN:GetVariable('AlertColor'))
    shownState = nil  -- the colour of the state comes back with the next line
    return text
  end
  return line
end
