-- wrk script: each connection pauses BENCH_PAUSE_MS between an answer and its next request, so
-- the offered load stays well below capacity (a moderate load, unlike back-to-back requests, which
-- saturate the machine whatever the connection count). wrk's latency excludes the pause.
-- With BENCH_ACCESS_TOKEN set, every request carries `Authorization: Bearer <token>`.
local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "")
if pause == nil then
  error("BENCH_PAUSE_MS is not set (run through deploy/bench/bench.py)")
end

local token = os.getenv("BENCH_ACCESS_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function delay()
  return pause
end
