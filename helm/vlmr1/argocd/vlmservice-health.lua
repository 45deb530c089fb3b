-- Argo CD health check of vlmr1.io/v1alpha1 VLMService.
--
-- Contract: Argo CD runs this with gopher-lua (Lua 5.1) with the live object as the global
-- `obj`, and reads the returned table {status = Healthy|Progressing|Degraded|Suspended|
-- Missing|Unknown, message = "..."}. A script from argocd-cm gets only the base and table
-- libraries (and a restricted os) unless useOpenLibs is set, so this uses no string or math
-- library (digests are shown whole). Every field may be missing (a service just created has
-- no status), so tables are read through nil checks only: a script error shows in Argo CD as
-- a broken health check, not as the service's state.
--
-- The operator (handlers/vlmservice.py) writes the phase, status.modelDigest (the digest the
-- spec asks for, resolved from a GRPOJob for model.fromJob), status.servedDigests (ready
-- replicas per digest: two entries during a rollout), readyReplicas, and the conditions
-- Ready, ModelResolved, and Invalid/Failed for a rejected spec.
--
--   no status, no phase, or status.observedGeneration < metadata.generation
--                  -> Progressing: the operator has not reconciled this spec yet.
--   Failed         -> Degraded, with the Invalid condition's message (else the Failed one's).
--   ModelResolved False
--                  -> Progressing with that condition's message: model.fromJob names a job
--                     without such a checkpoint (yet). Older replicas may keep serving the
--                     previous digest, but what the spec asks for is not served.
--   Ready, every ready replica on status.modelDigest, and at least as many as desired
--   (spec.replicas.count, else spec.replicas.min)
--                  -> Healthy. The operator's own test, repeated so that a Ready phase in a
--                     status with missing pieces is not taken on trust.
--   Ready otherwise, Progressing
--                  -> Progressing: a rollout (an old digest still served) or a scale change;
--                     the message names the digests and replica counts.
--   Progressing with 0 replicas desired and none ready
--                  -> Healthy: scaled to zero on purpose (the operator never reports Ready
--                     without a ready replica; Argo CD treats a Deployment at 0 the same way).
--   Pending        -> Progressing: nothing deployed yet.
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

local function text(v)
  if type(v) == "string" and v ~= "" then
    return v
  end
  return nil
end

-- The condition of that type, or nil.
local function condition(status, kind)
  local conditions = field(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if field(c, "type") == kind then
      return c
    end
  end
  return nil
end

local function condition_text(c)
  return text(field(c, "message")) or text(field(c, "reason")) or ""
end

local function with_details(head, details)
  if details == "" then
    return head
  end
  return head .. ": " .. details
end

local hs = {}
local spec = field(obj, "spec")
local status = field(obj, "status")
local phase = field(status, "phase")
local generation = number(field(field(obj, "metadata"), "generation"))
local observed = number(field(status, "observedGeneration"))

-- Desired replicas: spec.replicas.count (kubectl scale and the autoscaler write it), else min
-- (which the CRD defaults to 1).
local replicas = field(spec, "replicas")
local desired = number(field(replicas, "count")) or number(field(replicas, "min")) or 1
local ready = number(field(status, "readyReplicas")) or 0
local target = text(field(status, "modelDigest"))

-- Ready replicas on the target digest, and "sha256:... (n)" for every other digest served.
-- Without servedDigests the Deployment's readyReplicas stand in for the target count; without
-- modelDigest every served digest counts (old and new cannot be told apart).
local served = field(status, "servedDigests")
local on_target = 0
local others = {}
if type(served) == "table" then
  for _, entry in ipairs(served) do
    local n = number(field(entry, "replicas")) or 0
    if n > 0 then
      local digest = field(entry, "digest")
      if target == nil or digest == target then
        on_target = on_target + n
      else
        table.insert(others, tostring(digest) .. " (" .. int(n) .. ")")
      end
    end
  end
else
  on_target = ready
end

local function serving_text()
  if target == nil then
    return int(on_target) .. "/" .. int(desired) .. " replica(s) ready"
  end
  if #others > 0 then
    return "rolling out " .. target .. ": " .. int(on_target) .. "/" .. int(desired)
      .. " replica(s) ready on it; still serving " .. table.concat(others, ", ")
  end
  return int(on_target) .. "/" .. int(desired) .. " replica(s) ready on " .. target
end

local resolved = condition(status, "ModelResolved")

if type(phase) ~= "string" or phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the vlmr1 operator to report the service's status"
elseif generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the vlmr1 operator to reconcile generation " .. int(generation)
    .. " (status describes generation " .. int(observed) .. ")"
elseif phase == "Failed" then
  hs.status = "Degraded"
  local invalid = condition(status, "Invalid")
  local why = ""
  if field(invalid, "status") == "True" then
    why = condition_text(invalid)
  end
  if why == "" then
    why = condition_text(condition(status, "Failed"))
  end
  hs.message = with_details(phase, why)
elseif field(resolved, "status") == "False" then
  hs.status = "Progressing"
  local why = condition_text(resolved)
  if why == "" then
    why = "the model is not resolved yet"
  end
  hs.message = "Model not resolved: " .. why .. " (" .. serving_text() .. ")"
elseif phase == "Ready" or phase == "Progressing" then
  if phase == "Ready" and #others == 0 and on_target >= desired then
    hs.status = "Healthy"
    hs.message = serving_text()
    local endpoint = text(field(status, "endpoint"))
    if endpoint ~= nil then
      hs.message = hs.message .. " at " .. endpoint
    end
  elseif desired == 0 and ready == 0 and on_target == 0 and #others == 0 then
    hs.status = "Healthy"
    hs.message = "Scaled to zero replicas"
  else
    hs.status = "Progressing"
    hs.message = "Progressing: " .. serving_text()
  end
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = with_details(phase, condition_text(condition(status, "Ready")))
else
  hs.status = "Unknown"
  hs.message = "Unknown VLMService phase " .. tostring(phase)
end

return hs
