-- wrk script: POSTs the signed webhooks in $BENCH_WEBHOOKS (one a line: "<signature>\t<body>"),
-- each once, threads taking turns through the list. done() prints one JSON line:
-- {"requests", "durationS", "rps", "p50Ms", "p99Ms", "maxMs", "non2xx", "socketErrors"}.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = os.getenv("BENCH_WEBHOOKS")
  if not file then error("BENCH_WEBHOOKS is not set") end
  local count = tonumber(os.getenv("BENCH_THREADS") or "1")
  lines = {}
  local n = 0
  for line in io.lines(file) do
    -- Each thread keeps every count-th line, so no event is sent twice.
    if n % count == id then lines[#lines + 1] = line end
    n = n + 1
  end
  counter = 1
end

function request()
  local line = lines[counter]
  if not line then
    -- Out of distinct events: the rest are redeliveries (still verified, answered as duplicates).
    counter = 1
    line = lines[counter]
  end
  counter = counter + 1
  local tab = line:find("\t", 1, true)
  local headers = {["Content-Type"] = "application/json", ["Sandbox-Signature"] = line:sub(1, tab - 1)}
  return wrk.format("POST", "/v1/webhooks/sandbox", headers, line:sub(tab + 1))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "durationS": %.3f, "rps": %.2f, "p50Ms": %.3f, "p99Ms": %.3f, "maxMs": %.3f, "non2xx": %d, "socketErrors": %d}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
