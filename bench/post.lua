-- wrk script for signup POSTs: every request carries a distinct valid US number.
--
-- Environment (set by bench/run.py):
--   BENCH_PATH          request path, e.g. /join or /v1/contacts-opt-in/create?access_token=T
--   BENCH_MODE          "form" (the signup form, urlencoded) or "json" (ProTexting's opt-in call)
--   BENCH_FORM_TOKENS   form mode: thread i reads its form tokens (one a line, URL-encoded,
--                       each good for one signup) from the file BENCH_FORM_TOKENS .. i
--   BENCH_NUMBER_BASE   first national number (10 digits) of this run's block
--   BENCH_THREAD_BLOCK  numbers per wrk thread; thread i uses base + i*block ...
--
-- Counts answers by status (and 303s to "?pending=1") per thread; done() prints one
-- "BENCHJSON {...}" line with the totals and the latency percentiles (microseconds).

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  base = tonumber(os.getenv("BENCH_NUMBER_BASE"))
  block = tonumber(os.getenv("BENCH_THREAD_BLOCK") or "100000")
  mode = os.getenv("BENCH_MODE") or "form"
  path = os.getenv("BENCH_PATH") or "/"
  tokens = {}
  local stem = os.getenv("BENCH_FORM_TOKENS")
  if stem then
    for line in io.lines(stem .. id) do
      tokens[#tokens + 1] = line
    end
  end
  first = base + id * block
  sent = 0
  statuses = {}
  pending = 0
  if mode == "json" then
    headers = { ["Content-Type"] = "application/json" }
  else
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  end
end

function request()
  local n = first + (sent % block)
  sent = sent + 1
  local body
  if mode == "json" then
    body = string.format('{"PhoneNumber":"1%.0f","GroupIds":[1]}', n)
  else
    body = string.format("phone=%.0f&form_token=%s&website=", n, tokens[(sent - 1) % block + 1])
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 303 then
    local location = hdrs["location"] or hdrs["Location"] or ""
    if string.find(location, "pending=1", 1, true) then
      pending = pending + 1
    end
  end
end

function done(summary, latency, requests)
  local totals = {}
  local pending_total = 0
  local sent_total = 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for k, v in pairs(s) do
      totals[k] = (totals[k] or 0) + v
    end
    pending_total = pending_total + (t:get("pending") or 0)
    sent_total = sent_total + (t:get("sent") or 0)
  end
  local parts = {}
  for k, v in pairs(totals) do
    table.insert(parts, string.format('"%s":%d', k, v))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"statuses":{%s},"pending":%d,"sent":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ","), pending_total, sent_total))
end
