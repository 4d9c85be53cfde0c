// The Elasticsearch sink: one POST /<index>/_bulk per batch. The body is NDJSON, an action line
// and a source line per document, ending in a newline; the response's `errors` flag says whether
// to read the per-item results at all, and each item's `status` says whether it was written,
// should be retried (429 es_rejected_execution_exception, 5xx) or was refused for good.
#include <simdjson.h>

#include <string_view>

#include "cinejobs/batch_sinks.hpp"
#include "cinejobs/http_client.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/redact.hpp"

namespace cinejobs {
namespace {

bool retryable(std::int64_t status) { return status == 429 || status >= 500; }

// check_index_name applies Elasticsearch's rules for index names, so a bad one is refused here
// rather than by every request.
void check_index_name(const std::string& index) {
  bool ok = !index.empty() && index != "." && index != ".." && index.size() <= 255 &&
            index.find_first_of("\\/*?\"<>| ,#:") == std::string::npos && index.front() != '-' &&
            index.front() != '_' && index.front() != '+';
  for (const char c : index) ok = ok && !(c >= 'A' && c <= 'Z');
  if (!ok) {
    throw ConfigError("Elasticsearch index name '" + index +
                      "' is invalid: use lower case, no spaces or \\/*?\"<>|,#:, and do not "
                      "start with -, _ or +");
  }
}

class ElasticsearchSink final : public BatchSink {
 public:
  explicit ElasticsearchSink(ElasticsearchSinkOptions options)
      : options_(std::move(options)),
        http_({options_.base_url, std::chrono::milliseconds(5000), options_.timeout,
               options_.headers}) {
    check_index_name(options_.index);
    bulk_path_.append("/").append(options_.index).append("/_bulk");
  }

  std::string describe() const override {
    return "Elasticsearch index " + options_.index + " at " + redact_url(http_.options().base_url);
  }

  std::vector<ItemResult> write(std::span<const std::string> items) override {
    std::vector<ItemResult> results(items.size());
    std::vector<std::size_t> sent;  // indexes of the items in the body, in order
    std::string body;
    for (std::size_t i = 0; i < items.size(); ++i) {
      std::string error;
      if (append_document(body, items[i], error)) {
        sent.push_back(i);
      } else {
        results[i] = {ItemOutcome::kFailed, std::move(error)};
      }
    }
    if (sent.empty()) return results;

    const HttpResponse response =
        http_.request("POST", bulk_path_, body, {"Content-Type: application/x-ndjson"});
    if (retryable(response.status)) {
      // The whole request was turned away (overload, a node restarting): every item retries,
      // no sooner than a Retry-After says.
      const std::string error = describe() + " answered HTTP " + std::to_string(response.status) +
                                ": " + error_summary(response.body);
      const auto wait = response.retry_after().value_or(std::chrono::seconds(0));
      for (const auto i : sent) results[i] = {ItemOutcome::kRetry, error, wait};
      return results;
    }
    if (response.status < 200 || response.status >= 300) {
      // The whole request was refused (a malformed body, a closed index, no permission): the
      // same request would be refused again, so its items fail for good.
      const std::string error = describe() + " refused the bulk request with HTTP " +
                                std::to_string(response.status) + ": " +
                                error_summary(response.body);
      for (const auto i : sent) results[i] = {ItemOutcome::kFailed, error};
      return results;
    }
    read_item_results(response.body, sent, results);
    return results;
  }

 private:
  // append_document adds the action and source lines of one item, or says why it cannot.
  bool append_document(std::string& body, const std::string& item, std::string& error) {
    simdjson::dom::object object;
    if (auto e = parser_.parse(item).get_object().get(object); e) {
      error = std::string("item is not a JSON object (") + simdjson::error_message(e) + ")";
      return false;
    }
    std::string action = "{\"index\":{";
    if (!options_.id_field.empty()) {
      simdjson::dom::element id;
      std::string_view text;
      if (object.at_key(options_.id_field).get(id) != simdjson::SUCCESS || id.is_null()) {
        error = "item has no id field '" + options_.id_field + "'";
        return false;
      }
      action += "\"_id\":";
      if (id.get_string().get(text) == simdjson::SUCCESS) {
        append_json_string(action, text);
      } else {
        append_json_string(action, simdjson::to_string(id));
      }
    }
    body += action;
    body += "}}\n";
    // NDJSON: a source document must fit on one line.
    if (item.find('\n') == std::string::npos) {
      body += item;
    } else {
      body += simdjson::to_string(object);
    }
    body += '\n';
    return true;
  }

  // read_item_results maps the response's items, in request order, onto the sent items.
  void read_item_results(const std::string& text, const std::vector<std::size_t>& sent,
                         std::vector<ItemResult>& results) {
    simdjson::dom::element root;
    bool errors = true;
    if (parser_.parse(text).get(root) != simdjson::SUCCESS ||
        root["errors"].get(errors) != simdjson::SUCCESS) {
      throw Error(describe() +
                  " sent a _bulk response without an `errors` flag: " + text.substr(0, 200));
    }
    if (!errors) return;
    simdjson::dom::array items;
    if (root["items"].get(items) != simdjson::SUCCESS || items.size() != sent.size()) {
      throw Error(describe() + " sent a _bulk response whose items do not match the request");
    }
    std::size_t n = 0;
    for (simdjson::dom::element entry : items) {
      const std::size_t i = sent[n++];
      simdjson::dom::object action;
      std::int64_t status = 0;
      if (entry.get_object().get(action) != simdjson::SUCCESS || action.size() != 1 ||
          (*action.begin()).value["status"].get(status) != simdjson::SUCCESS) {
        results[i] = {ItemOutcome::kRetry, "unreadable item result in the _bulk response"};
        continue;
      }
      if (status >= 200 && status < 300) continue;
      const simdjson::dom::element result = (*action.begin()).value;
      std::string error = "HTTP ";
      error += std::to_string(status);
      std::string_view type;
      std::string_view reason;
      if (result["error"]["type"].get(type) == simdjson::SUCCESS) error.append(" ").append(type);
      if (result["error"]["reason"].get(reason) == simdjson::SUCCESS) {
        error.append(": ").append(reason);
      }
      results[i] = {retryable(status) ? ItemOutcome::kRetry : ItemOutcome::kFailed, error};
    }
  }

  // error_summary reads {"error": {"type", "reason"}} from an error response, else its start.
  std::string error_summary(const std::string& text) {
    simdjson::dom::element root;
    std::string_view type;
    std::string_view reason;
    if (parser_.parse(text).get(root) == simdjson::SUCCESS &&
        root["error"]["type"].get(type) == simdjson::SUCCESS) {
      std::string out(type);
      if (root["error"]["reason"].get(reason) == simdjson::SUCCESS) out.append(": ").append(reason);
      return out;
    }
    return text.substr(0, 200);
  }

  ElasticsearchSinkOptions options_;
  HttpClient http_;
  std::string bulk_path_;
  simdjson::dom::parser parser_;
};

}  // namespace

std::shared_ptr<BatchSink> make_elasticsearch_sink(ElasticsearchSinkOptions options) {
  return std::make_shared<ElasticsearchSink>(std::move(options));
}

}  // namespace cinejobs
