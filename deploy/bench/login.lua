-- wrk script: POST /v1/auth/login, the same registered user's credentials on every request.
-- Every request is a successful login (an Argon2id verification, a new session and refresh token);
-- identity throttles failed logins only. The body comes from BENCH_LOGIN_BODY (JSON), set by bench.py.
local body = os.getenv("BENCH_LOGIN_BODY")
if body == nil or body == "" then
  error("BENCH_LOGIN_BODY is not set (run through deploy/bench/bench.py)")
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "wrk (deploy/bench/login.lua)"
