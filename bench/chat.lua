-- wrk script: POST /v1/chat/completions with a body read from a file.
--   BENCH_BODY_FILE  path of the JSON request body (run.py writes a JSON and a streaming one)
--   BENCH_TOKEN      optional bearer token (the gateway target needs one)
-- wrk counts a streamed response as one request, complete when its last chunk arrives.

local path = os.getenv("BENCH_BODY_FILE")
local f = assert(io.open(path, "rb"), "cannot open BENCH_BODY_FILE " .. tostring(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
