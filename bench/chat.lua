-- wrk script: POST /v1/chat/completions with a body read from a file.
--   BENCH_BODY_FILE  path of the JSON request body (run.py writes a JSON and a streaming one)
--   BENCH_TOKEN      optional bearer token (the gateway target needs one)
--   BENCH_UNIQUE     1: a different body every request (see the end)
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

-- BENCH_UNIQUE=1 (in the harness's environment): every request differs (a "seed" no run
-- repeats), so a response cache misses every time: its miss path, measured.
if os.getenv("BENCH_UNIQUE") == "1" then
  math.randomseed(os.time())
  local run = string.format("%d%04d", os.time() % 100000, math.random(0, 9999))
  local n = 0
  local base = wrk.body
  request = function()
    n = n + 1
    local seed = '"seed":' .. run .. string.format("%07d", n) .. ',"max_tokens"'
    local body = base:gsub('"max_tokens"', seed, 1)
    return wrk.format(nil, nil, nil, body)
  end
end
