-- wrk script for a burst (a flash sale): scripts/wrk_orders.lua's orders, one per connection.
-- Give every customer a connection, and a thread stops once each of its customers has had an
-- answer, so every order leaves at once:
--   wrk -t2 -c1000 -d5s --latency -s scripts/wrk_burst.lua http://127.0.0.1:3000 -- FILE 2
-- wrk cannot stop one connection: one answered before its thread's last sends wrk_orders.lua's
-- out-of-customers GET (a fast 404) until the thread stops. Those count in wrk's figures (up
-- to a tenth of the requests; wrk prints them as non-2xx beside the refused orders), so
-- `scripts/bench`'s burst, which measures the orders alone, is the one to quote.
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
  answered = 0
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= share then
    wrk.thread:stop()
  end
end
