-- wrk script: POST /v1/auth/refresh, always with the newest refresh token of a session.
--
-- Every refresh uses up the token it presents and returns a new one, so a fixed body cannot be
-- replayed. bench.py logs in once per wrk connection just before the run (so the run measures
-- refreshes only) and writes BENCH_REFRESH_TOKENS: one line per session, "<thread index> <token>",
-- one line more per thread than wrk gives that thread connections: before the threads start, wrk
-- calls request() once on the first thread to inspect the request, and that call takes a token
-- that is never sent (a session left unused; harmless).
--
-- wrk's response() does not say which connection answered, so each thread keeps a queue of
-- sessions' current tokens: request() takes one out, response() puts the new token from the body
-- back. With one request in flight per connection (no pipelining: wrk's default), a session's
-- next token exists only once its previous refresh has answered, so every session has at most
-- one refresh in flight and every token is presented exactly once. done() prints
--   refresh tokens: sent N, rotated M, resent 0, starved 0
-- which bench.py checks: "sent" counts request() calls (N - M: the refreshes still in flight when
-- wrk stopped, and wrk's inspection call), "resent" tokens presented twice (identity would answer those
-- within IDENTITY_REFRESH_REUSE_GRACE_SECONDS and revoke the session after it), "starved"
-- requests sent with no token at hand (they get 401 and show up as non-2xx).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local queue, head, tail = {}, 1, 0
local presented = {}
sent, rotated, resent, starved = 0, 0, 0, 0  -- globals: done() reads them with thread:get

function init(args)
  local path = os.getenv("BENCH_REFRESH_TOKENS")
  if path == nil or path == "" then
    error("BENCH_REFRESH_TOKENS is not set (run through deploy/bench/bench.py)")
  end
  for line in io.lines(path) do
    local owner, token = line:match("^(%d+)%s+(%S+)$")
    if owner and tonumber(owner) == id then
      tail = tail + 1
      queue[tail] = token
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local token
  if head <= tail then
    token = queue[head]
    queue[head] = nil
    head = head + 1
  else
    starved = starved + 1
    token = "no-token-at-hand"
  end
  if presented[token] then
    resent = resent + 1
  end
  presented[token] = true
  sent = sent + 1
  return wrk.format(nil, nil, nil, '{"refreshToken":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = status == 200 and body and body:match('"refreshToken"%s*:%s*"([^"]+)"')
  if token then
    rotated = rotated + 1
    tail = tail + 1
    queue[tail] = token
  end
end

function done(summary, latency, requests)
  local total = { sent = 0, rotated = 0, resent = 0, starved = 0 }
  for _, thread in ipairs(threads) do
    for key in pairs(total) do
      total[key] = total[key] + (thread:get(key) or 0)
    end
  end
  io.write(string.format("refresh tokens: sent %d, rotated %d, resent %d, starved %d\n",
                         total.sent, total.rotated, total.resent, total.starved))
end
