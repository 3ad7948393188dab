-- wrk script: walks a file of pre-built, pre-signed raw HTTP requests, one distinct request
-- per call. wrk cannot sign, so ingest.py writes the requests (all the same length) up front.
--
-- Usage: wrk -t1 -c64 -d10s --latency -s walk.lua URL -- FILE RECORD_LEN FIRST COUNT
-- Run with one thread (-t1): each wrk thread has its own Lua state and would replay the same
-- requests, and the server needs the machine's other core anyway.

local requests = {}
pool = 0 -- globals, so done() can read them with thread:get()
position = 0
wraps = 0

function init(args)
  local path, record = args[1], tonumber(args[2])
  local first, count = tonumber(args[3]), tonumber(args[4])
  local file = assert(io.open(path, "rb"))
  file:seek("set", first * record)
  for k = 1, count do
    local raw = file:read(record)
    if raw == nil or #raw < record then
      break
    end
    requests[k] = raw
  end
  file:close()
  pool = #requests
  assert(pool > 0, "no requests read from " .. path)
end

function request()
  position = position + 1
  if position > pool then -- wrapped: from here on, requests repeat (duplicates for Hookyard)
    position = 1
    wraps = wraps + 1
  end
  return requests[position]
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, _)
  local sent, wrapped = 0, 0
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("position") + thread:get("wraps") * thread:get("pool")
    wrapped = wrapped + thread:get("wraps")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, '
      .. '"p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "sent": %d, "wraps": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, sent, wrapped
  ))
end
