-- Dream Window skin logic (Rainmeter Lua, read by [MeasureDream]).
--
-- Every tick: read status.ini (written atomically by dream-window, so it is never half a file),
-- publish the status line as this measure's string value, and when FrameName changes load the
-- new frame into the hidden layer and start the crossfade:
--   * bottom layer showing: the new frame goes into FrameB (top) at alpha 0, which fades in;
--   * top layer showing: the new frame goes into FrameA (bottom, always opaque), FrameB fades out.
-- Only FrameB's alpha moves, so the picture never dims halfway. While a fade runs, newer frames
-- wait for the next tick; a skipped frame is never shown late.

local statusFile, framesFolder
local lastName = nil
local topShowing = false
local busyTicks = 0
local fadeTicks = 1

function Initialize()
  statusFile = SELF:GetOption('StatusFile')
  framesFolder = SELF:GetOption('FramesFolder')
  local fadeMs = (tonumber(SKIN:GetVariable('FadeSteps')) or 12) * (tonumber(SKIN:GetVariable('FadeStepMs')) or 40)
  local tickMs = tonumber(SKIN:GetVariable('UpdateMs')) or 500
  fadeTicks = math.max(1, math.ceil(fadeMs / tickMs))
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

function Update()
  if busyTicks > 0 then busyTicks = busyTicks - 1 end
  local status = readStatus(statusFile)
  if not status then
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
  if field(status, 'State') == 'stopped' then
    return 'stopped - ' .. field(status, 'Prompt')
  end
  return field(status, 'StatusLine')
end
