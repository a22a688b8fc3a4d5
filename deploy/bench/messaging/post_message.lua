-- wrk script: POST /v1/conversations/{id}/messages, cycling over the (access token, conversation)
-- pairs in BENCH_PAIRS_FILE (one "TOKEN CONVERSATION" per line, written by bench_messaging.py just
-- before the run; tokens stay off the command line). One body in four holds BENCH_PHONE, so the
-- detector masks it for the recipient.
local file = os.getenv("BENCH_PAIRS_FILE")
if file == nil or file == "" then
  error("BENCH_PAIRS_FILE is not set (run through deploy/bench/messaging/bench_messaging.py)")
end
local phone = os.getenv("BENCH_PHONE") or "07700 900123"

local pairs_ = {}
for line in io.lines(file) do
  local token, conversation = line:match("^(%S+) (%S+)$")
  if token then pairs_[#pairs_ + 1] = { token = token, path = "/v1/conversations/" .. conversation .. "/messages" } end
end
if #pairs_ == 0 then error("no pairs in " .. file) end

local counter = 0
local offset = 0

function setup(thread)
  -- Threads start at different pairs so that they do not post to the same conversations in step.
  thread:set("offset", offset)
  offset = offset + math.floor(#pairs_ / 2)
end

function init(args)
  offset = tonumber(wrk.thread:get("offset")) or 0
  counter = offset
end

function request()
  counter = counter + 1
  local pair = pairs_[(counter % #pairs_) + 1]
  local body
  if counter % 4 == 0 then
    body = '{"body":"Message ' .. counter .. ': ' .. phone .. '"}'
  else
    body = '{"body":"Message ' .. counter .. ': is the litter vaccinated yet?"}'
  end
  return wrk.format("POST", pair.path, { ["Authorization"] = "Bearer " .. pair.token, ["Content-Type"] = "application/json" }, body)
end
