-- Stores one chunk's result (store_result in results.lua), leaving its delivery leased: the
-- worker acks it next. A payload too large for one argument was staged in parts beforehand.
-- KEYS and ARGV: as results.lua takes them, with one result.
-- Returns the store_result reply.
local outcome = store_result(result_items()[1])
flush_tally()
return outcome
