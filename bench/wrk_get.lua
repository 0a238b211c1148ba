-- wrk script for `make bench`: GETs a rotating list of paths with an Authorization header.
-- Usage: wrk ... -s bench/wrk_get.lua URL -- PATHS_FILE
-- PATHS_FILE: the Authorization header value on the first line, then one path per line.
-- done() prints the figures as one JSON line for bench/http_load.py.

local paths = {}
local next_path = 0

function init(args)
  local first = true
  for line in io.lines(args[1]) do
    if first then
      wrk.headers["Authorization"] = line
      first = false
    else
      paths[#paths + 1] = line
    end
  end
  -- Each thread starts somewhere else in the list.
  next_path = math.random(#paths)
end

function request()
  next_path = next_path % #paths + 1
  return wrk.format("GET", paths[next_path])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d,'
      .. ' "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
