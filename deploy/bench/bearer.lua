-- wrk script: GET with `Authorization: Bearer <access token>` (BENCH_ACCESS_TOKEN, from a login
-- bench.py makes just before the run; access tokens live 15 minutes). Kept out of wrk's command
-- line so the token is not printed.
local token = os.getenv("BENCH_ACCESS_TOKEN")
if token == nil or token == "" then
  error("BENCH_ACCESS_TOKEN is not set (run through deploy/bench/bench.py)")
end

wrk.headers["Authorization"] = "Bearer " .. token
