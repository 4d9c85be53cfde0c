-- Shared by the Celery broker's scripts (prepended to each when loaded). kombu's Redis transport
-- lays a Celery app's messages out as:
--   <queue> (list)                 messages waiting, LPUSHed by producers, taken from the tail
--   <queue>\x06\x16<p> (list)      the same for priority steps p = 3, 6, 9 (0 is the plain list)
--   unacked (hash)                 delivery tag -> JSON [message, exchange, routing_key]
--   unacked_index (sorted set)     delivery tag -> score; a delivery whose score is older than
--                                  now - visibility_timeout is restored to its queue
--   _kombu.binding.<exchange> (set) "routing_key\x06\x16pattern\x06\x16queue" per bound queue
-- Invariant: a message is in exactly one place, a queue list or the unacked hash (with its
-- index entry); every script moves it between the two in one step.

local SEP = '\6\22'
local PRIORITY_STEPS = {0, 3, 6, 9}

-- queue_key names the list holding priority `pri` of `queue`, as kombu's _q_for_pri does.
local function queue_key(queue, pri)
  local step = 0
  for _, s in ipairs(PRIORITY_STEPS) do
    if pri >= s then step = s end
  end
  if step == 0 then return queue end
  return queue .. SEP .. step
end

-- field reads a decoded JSON object's field, treating JSON null (cjson.null) as absent.
local function field(tbl, name)
  if type(tbl) ~= 'table' then return nil end
  local value = tbl[name]
  if value == cjson.null then return nil end
  return value
end

-- bound_queues returns the queues a message for (exchange, routing_key) goes to, as kombu's
-- _lookup does for direct exchanges (the ones Celery declares for task queues); an anonymous
-- exchange routes to the queue named by the routing key, and so does an exchange with no
-- binding that matches (rather than dropping the message).
local function bound_queues(exchange, routing_key)
  if exchange == nil or exchange == '' then return {routing_key} end
  local queues = {}
  for _, member in ipairs(redis.call('SMEMBERS', '_kombu.binding.' .. exchange)) do
    local first = string.find(member, SEP, 1, true)
    if first then
      local key = string.sub(member, 1, first - 1)
      local second = string.find(member, SEP, first + #SEP, true)
      if second and key == routing_key then
        table.insert(queues, string.sub(member, second + #SEP))
      end
    end
  end
  if #queues == 0 then queues = {routing_key} end
  return queues
end

-- restore moves delivery `tag` from unacked back to the head of its queues' lists (RPUSH: the
-- next message taken), marked redelivered, as kombu's restore_by_tag does. Returns 1 when the
-- tag was held.
local function restore(unacked, index, tag)
  local stored = redis.call('HGET', unacked, tag)
  redis.call('HDEL', unacked, tag)
  redis.call('ZREM', index, tag)
  if not stored then return 0 end
  local ok, entry = pcall(cjson.decode, stored)
  if not ok or type(entry) ~= 'table' or type(entry[1]) ~= 'table' then
    -- Unreadable: keep it where a person can look at it rather than drop it.
    redis.call('RPUSH', '_cinejobs.celery.unreadable', stored)
    return 1
  end
  local message = entry[1]
  local headers = field(message, 'headers')
  if type(headers) == 'table' then headers['redelivered'] = true end
  local properties = field(message, 'properties')
  local priority = 0
  if type(properties) == 'table' then
    local info = field(properties, 'delivery_info')
    if type(info) == 'table' then info['redelivered'] = true end
    priority = tonumber(field(properties, 'priority')) or 0
  end
  local text = cjson.encode(message)
  for _, queue in ipairs(bound_queues(field(entry, 2) or '', field(entry, 3) or '')) do
    redis.call('RPUSH', queue_key(queue, priority), text)
  end
  return 1
end
