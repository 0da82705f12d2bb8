-- Dream Window skin logic (Rainmeter Lua, read by [MeasureDream]).
--
-- Every tick: read status.ini (written atomically by dream-window, so it is never half a file),
-- publish the status line as this measure's string value, and when FrameName changes load the
-- new frame into the hidden layer and start the crossfade:
--   * bottom layer showing: the new frame goes into FrameB (top) at alpha 0, which fades in;
--   * top layer showing: the new frame goes into FrameA (bottom, always opaque), FrameB fades out.
-- Only FrameB's alpha moves, so the picture never dims halfway. While a fade runs, newer frames
-- wait for the next tick; a skipped frame is never shown late.
--
-- A stale status.ini means dream-window is gone. While it lives, it rewrites status.ini at least
-- every Heartbeat seconds (5), frames or not, with UpdatedEpoch = Unix seconds of that write;
-- os.time() is Unix seconds too (UTC-based, on Windows as on Linux), so their difference is the
-- file's age whatever the time zone. The skin shows "stopped" when the age is over 3 intervals,
-- an interval being the longer of Heartbeat and this skin's own tick (UpdateMs): 3 x max(5 s,
-- 0.5 s) = 15 s by default. A living service's file is never much older than one heartbeat (plus
-- a second of rounding), so three leave room for a write held up by a busy disk or a reader
-- holding the file; and a skin slowed down below the heartbeat judges on no fewer than three
-- of its own looks. A file from the future (the clock was set back) counts as fresh; a status.ini
-- without UpdatedEpoch (an older dream-window) is trusted as it says.
--
-- The state shown is published as the skin variable DreamState (the status.ini State, or
-- "stopped" when stale or missing); waiting, degraded and stopped draw the status line in
-- AlertColor instead of TextColor. The line itself is clipped; its tooltip shows all of it.

local statusFile, framesFolder
local lastName = nil
local topShowing = false
local busyTicks = 0
local fadeTicks = 1
local tickS = 0.5
local shownState = nil

function Initialize()
  statusFile = SELF:GetOption('StatusFile')
  framesFolder = SELF:GetOption('FramesFolder')
  local fadeMs = (tonumber(SKIN:GetVariable('FadeSteps')) or 12) * (tonumber(SKIN:GetVariable('FadeStepMs')) or 40)
  local tickMs = tonumber(SKIN:GetVariable('UpdateMs')) or 500
  fadeTicks = math.max(1, math.ceil(fadeMs / tickMs))
  tickS = tickMs / 1000
end

-- status.ini as a table of key -> value (one "Key=Value" per line; ";" comments and the
-- [DreamWindow] header are skipped).
local function readStatus(path)
  local f = io.open(path, 'r')
  if not f then return nil end
  local text = f:read('*a')
  f:close()
  local values = {}
  for line in text:gmatch('[^\r\n]+') do
    local key, value = line:match('^(%w+)=(.*)$')
    if key then values[key] = value end
  end
  return values
end

local function field(status, key)
  return status[key] or ''
end

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
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

-- Seconds since status.ini was written when that is more than 3 intervals (see the top), else nil.
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

function Update()
  if busyTicks > 0 then busyTicks = busyTicks - 1 end
  local status = readStatus(statusFile)
  if not status then
    setState('stopped')
    return 'dream-window is not running (no ' .. statusFile .. ')'
  end
  SKIN:Bang('!SetVariable', 'PauseAction', field(status, 'UserPaused') == '1' and 'resume' or 'pause')
  local name = field(status, 'FrameName')
  if name ~= '' and name ~= lastName and busyTicks == 0 then
    local path = framesFolder .. name
    if exists(path) then
      show(path)
      lastName = name
    end
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
