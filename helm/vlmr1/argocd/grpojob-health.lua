-- Argo CD health check of vlmr1.io/v1alpha1 GRPOJob.
--
-- Contract: Argo CD runs this with gopher-lua (Lua 5.1) with the live object as the global
-- `obj`, and reads the returned table {status = Healthy|Progressing|Degraded|Suspended|
-- Missing|Unknown, message = "..."}. A script from argocd-cm gets only the base and table
-- libraries (and a restricted os) unless useOpenLibs is set, so this uses no string or math
-- library. Every field may be missing (a job just created has no status), so tables are read
-- through nil checks only: a script error shows in Argo CD as a broken health check, not as
-- the job's state.
--
-- The phases come from the operator's state machine (lifecycle.py): each phase has a
-- condition of the same type, and a rejected spec adds an Invalid condition.
--
--   no status, no phase, or status.observedGeneration < metadata.generation
--                  -> Progressing: the operator has not reconciled this spec yet, so a phase
--                     shown now would describe an older spec.
--   Pending, Running
--                  -> Progressing: a job is a finite run heading for Succeeded; the message
--                     carries step/maxSteps and the mean reward once the trainer reports them.
--   Restarting     -> Progressing: a gang restart is the operator's own recovery (it resumes
--                     from the newest verified checkpoint within runPolicy.backoffLimit); once
--                     the limit is used up the phase becomes Failed.
--   Suspended      -> Suspended: runPolicy.suspend is true, the pods were deleted on purpose.
--   Succeeded      -> Healthy: the end state a job is created for.
--   Failed         -> Degraded, with the Invalid condition's message for a rejected spec,
--                     else the Failed condition's (backoff limit used up, deadline passed).
--   anything else  -> Unknown, naming the phase (one this script does not know yet).

local function field(t, key)
  if type(t) ~= "table" then
    return nil
  end
  return t[key]
end

local function number(v)
  if type(v) == "number" or type(v) == "string" then
    return tonumber(v)
  end
  return nil
end

local function int(n)
  return tostring(n - n % 1)
end

-- n with three decimals ("0.412", "-1.250"), without string.format.
local function decimals3(n)
  local sign = ""
  if n < 0 then
    sign = "-"
    n = -n
  end
  local thousandths = n * 1000 + 0.5
  thousandths = thousandths - thousandths % 1
  if thousandths == 0 then
    sign = ""
  end
  local fraction = thousandths % 1000
  local pad = ""
  if fraction < 10 then
    pad = "00"
  elseif fraction < 100 then
    pad = "0"
  end
  return sign .. int((thousandths - fraction) / 1000) .. "." .. pad .. int(fraction)
end

-- The condition of that type whose status is "True", or nil.
local function true_condition(status, kind)
  local conditions = field(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if field(c, "type") == kind and field(c, "status") == "True" then
      return c
    end
  end
  return nil
end

local function condition_text(c)
  local message = field(c, "message")
  if type(message) == "string" and message ~= "" then
    return message
  end
  local reason = field(c, "reason")
  if type(reason) == "string" and reason ~= "" then
    return reason
  end
  return ""
end

-- "step 12/100, mean reward 0.412" from status.progress; "" before the trainer reports.
local function progress_text(status)
  local progress = field(status, "progress")
  local parts = {}
  local step = number(field(progress, "step"))
  if step ~= nil then
    local max_steps = number(field(progress, "maxSteps"))
    if max_steps ~= nil then
      table.insert(parts, "step " .. int(step) .. "/" .. int(max_steps))
    else
      table.insert(parts, "step " .. int(step))
    end
  end
  local reward = number(field(progress, "rewardMean"))
  if reward ~= nil then
    table.insert(parts, "mean reward " .. decimals3(reward))
  end
  return table.concat(parts, ", ")
end

-- The non-empty pieces joined with "; ".
local function join(pieces)
  local kept = {}
  for _, piece in ipairs(pieces) do
    if piece ~= "" then
      table.insert(kept, piece)
    end
  end
  return table.concat(kept, "; ")
end

local function with_details(head, details)
  if details == "" then
    return head
  end
  return head .. ": " .. details
end

local hs = {}
local status = field(obj, "status")
local phase = field(status, "phase")
local generation = number(field(field(obj, "metadata"), "generation"))
local observed = number(field(status, "observedGeneration"))

if type(phase) ~= "string" or phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the vlmr1 operator to report the job's status"
elseif generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the vlmr1 operator to reconcile generation " .. int(generation)
    .. " (status describes generation " .. int(observed) .. ")"
elseif phase == "Pending" or phase == "Running" or phase == "Restarting" then
  hs.status = "Progressing"
  local head = phase
  local restarts = number(field(status, "restarts"))
  if phase == "Restarting" and restarts ~= nil and restarts > 0 then
    head = phase .. " (gang restart " .. int(restarts) .. ")"
  end
  hs.message = with_details(head, join({ progress_text(status), condition_text(true_condition(status, phase)) }))
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = with_details(phase, join({ condition_text(true_condition(status, phase)), progress_text(status) }))
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  local best = number(field(field(status, "bestCheckpoint"), "step"))
  local best_text = ""
  if best ~= nil then
    best_text = "best checkpoint at step " .. int(best)
  end
  hs.message = with_details(phase, join({ progress_text(status), best_text }))
elseif phase == "Failed" then
  hs.status = "Degraded"
  local why = condition_text(true_condition(status, "Invalid"))
  if why == "" then
    why = condition_text(true_condition(status, "Failed"))
  end
  hs.message = with_details(phase, join({ why, progress_text(status) }))
else
  hs.status = "Unknown"
  hs.message = "Unknown GRPOJob phase " .. tostring(phase)
end

return hs
