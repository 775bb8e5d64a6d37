-- wrk script for a burst (a flash sale): scripts/wrk_orders.lua's orders, one per connection.
-- Give every customer a connection (1,000 customers: -c1000), and each connection sends its
-- customer's order and nothing else, so every order leaves at once and wrk's figures are the
-- orders alone:
--   wrk -t2 -c1000 -d5s --latency -s scripts/wrk_burst.lua http://127.0.0.1:3000 -- FILE 2
-- A run that measured every order prints "1000 requests" and, with a stock of 100,
-- "Non-2xx or 3xx responses: 900".
-- (A separate script because wrk parses every answer's headers once a script has `response`,
-- which would slow the sustained runs.)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_orders.lua")

local orders_init = init

function init(args)
  orders_init(args)
  share = 0
  for _ = next_token, #tokens, step do
    share = share + 1
  end
  sent = 0
  answered = 0
end

-- wrk asks for a delay before every request a connection sends (and calls `request` when it
-- has passed). The first `share` requests go at once, one per customer; after them a
-- connection waits past the end of the run (wrk cannot close one connection), so it never
-- sends wrk_orders.lua's out-of-customers request.
function delay()
  if sent < share then
    sent = sent + 1
    return 0
  end
  return 3600000
end

-- A thread stops once each of its customers has had an answer.
function response(status, headers, body)
  answered = answered + 1
  if answered >= share then
    wrk.thread:stop()
  end
end
