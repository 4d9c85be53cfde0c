-- Takes up to ARGV[4] messages from the queues ARGV[5..] (each queue's priority lists in
-- kombu's order: step 0 of every queue first, then 3, 6, 9) and holds them as kombu's consumer
-- does: the message under its delivery tag in the unacked hash (ARGV[1]) as
-- [message, exchange, routing_key], its score ARGV[3] in the unacked_index set (ARGV[2]).
-- Unlike kombu (BRPOP, then HSET), the move is one step, so a worker dying in between loses
-- nothing.
-- Messages this worker must not run are not held: a content type other than application/json
-- (pickle, yaml, msgpack) or a protocol 1 message (no task id in the headers) goes back to the
-- tail of its list (LPUSH, as kombu's reject with requeue) for a Celery worker; one that is not
-- a JSON envelope at all goes to _cinejobs.celery.unreadable.
-- Returns {refused, {tag, queue, id, task, retries, envelope}...}.
local unacked, index, score, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rows = {}
local refused = 0
for _, step in ipairs(PRIORITY_STEPS) do
  for i = 5, #ARGV do
    if #rows >= max then break end
    local queue = ARGV[i]
    local key = queue_key(queue, step)
    local taken = redis.call('RPOP', key, max - #rows)
    if taken then
      for _, raw in ipairs(taken) do
        local ok, message = pcall(cjson.decode, raw)
        if not ok or type(message) ~= 'table' then
          redis.call('RPUSH', '_cinejobs.celery.unreadable', raw)
        else
          local headers = field(message, 'headers')
          local properties = field(message, 'properties')
          local tag = field(properties, 'delivery_tag')
          local id = field(headers, 'id')
          if field(message, 'content-type') ~= 'application/json' or type(id) ~= 'string' or
              type(tag) ~= 'string' then
            redis.call('LPUSH', key, raw)
            refused = refused + 1
          else
            local info = field(properties, 'delivery_info') or {}
            redis.call('HSET', unacked, tag, '[' .. raw .. ', ' ..
              cjson.encode(field(info, 'exchange') or '') .. ', ' ..
              cjson.encode(field(info, 'routing_key') or '') .. ']')
            redis.call('ZADD', index, score, tag)
            table.insert(rows, {tag, queue, id, tostring(field(headers, 'task') or ''),
                                tostring(tonumber(field(headers, 'retries')) or 0), raw})
          end
        end
      end
    end
  end
end
return {refused, rows}
