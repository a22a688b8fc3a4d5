-- wrk script: cycles through the request paths in $BENCH_SEARCH_QUERIES (one a line, from
-- queries.py). Each thread starts at a different offset; its connections share the thread's
-- counter, so they ask different things too. done() prints one JSON line:
-- {"requests", "durationS", "rps", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs", "non2xx", "socketErrors"}.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = os.getenv("BENCH_SEARCH_QUERIES")
  if not file then error("BENCH_SEARCH_QUERIES is not set") end
  paths = {}
  for line in io.lines(file) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  if #paths == 0 then error("no requests in " .. file) end
  -- wrk runs setup() for every thread before init(); spread the threads over the list.
  local spread = math.max(1, math.floor(#paths / 7))
  counter = (id * spread) % #paths + 1
end

function request()
  local path = paths[counter]
  counter = counter % #paths + 1
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "durationS": %.3f, "rps": %.2f, "p50Ms": %.3f, "p90Ms": %.3f, "p95Ms": %.3f, ' ..
    '"p99Ms": %.3f, "maxMs": %.3f, "non2xx": %d, "socketErrors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, e.status,
    e.connect + e.read + e.write + e.timeout))
end
