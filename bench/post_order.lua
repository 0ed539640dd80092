-- wrk -s bench/post_order.lua <api>/orders: POST one limit order per request with the key in
-- ORDERS_KEY, count the answers by status (and how many said SUCCESS), and print one line
-- "WRK_JSON {...}" with the latency distribution (microseconds) for bench/run.py.
wrk.method = "POST"
wrk.body = '{"type": "limit", "side": "buy", "instrument": "US0378331005", '
  .. '"limit_price": "1.50", "quantity": 1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("ORDERS_KEY") or "")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  success = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if body and body:find('"status":"SUCCESS"', 1, true) then
    success = success + 1
  end
end

function done(summary, latency, requests)
  local counts, ok = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    ok = ok + thread:get("success")
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "success": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, '
      .. '"statuses": {%s}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, ok,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, table.concat(parts, ", ")))
end
