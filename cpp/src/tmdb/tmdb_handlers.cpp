// The native handlers tmdb.enrich and tmdb.sync, and the parts they share within one worker: the
// TMDB client (with its shared rate limiter and response cache), the film store and the sync
// batcher, all made on the first job from the broker the job came from.
#include <simdjson.h>

#include <cstdlib>
#include <mutex>

#include "cinejobs/batch_sinks.hpp"
#include "cinejobs/batcher.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/json_text.hpp"
#include "cinejobs/log.hpp"
#include "cinejobs/tmdb_pipeline.hpp"
#include "cinejobs/worker.hpp"

namespace cinejobs {
namespace {

std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : fallback;
}

// kMaxSyncFilms: the most films one tmdb.sync sends (a session is one imported list).
constexpr int kMaxSyncFilms = 1'000'000;

struct FilmRef {
  std::string session;
  int position = -1;
};

FilmRef film_ref(const std::string& kwargs, std::string_view task, bool needs_position) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  FilmRef ref;
  std::string_view session;
  std::int64_t position = -1;
  if (parser.parse(kwargs).get_object().get(obj) || obj["session"].get_string().get(session) ||
      session.empty() ||
      (needs_position && (obj["position"].get_int64().get(position) || position < 0))) {
    throw HandlerError("ValueError", std::string(task) + " needs kwargs {\"session\": \"<id>\"" +
                                         (needs_position ? ", \"position\": <n >= 0>}" : "}"));
  }
  ref.session = std::string(session);
  ref.position = static_cast<int>(position);
  return ref;
}

// sync_document: what the search index gets for an enriched film, the record plus where it came
// from; its id makes a resend overwrite instead of duplicating.
std::string sync_document(const Film& film) {
  std::string out = "{\"id\": ";
  append_json_string(out, film.session_id + ":" + std::to_string(film.position));
  out += ", \"session\": ";
  append_json_string(out, film.session_id);
  out += ", \"position\": " + std::to_string(film.position) + ", \"input\": ";
  append_json_string(out, film.input.input);
  out += ", \"record\": " + film.outcome.record + "}";
  return out;
}

// FilmSyncSink: the search index's sink, then the films it took stamped synced. A film whose
// stamp is lost to a crash is sent again by tmdb.sync, which the document id makes harmless.
class FilmSyncSink final : public BatchSink {
 public:
  FilmSyncSink(std::shared_ptr<BatchSink> index, std::shared_ptr<FilmStore> store)
      : index_(std::move(index)), store_(std::move(store)) {}

  std::vector<ItemResult> write(std::span<const std::string> items) override {
    std::vector<ItemResult> results = index_->write(items);
    std::map<std::string, std::vector<int>> delivered;
    simdjson::dom::parser parser;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!results.empty() && results[i].outcome != ItemOutcome::kDelivered) continue;
      std::string_view session;
      std::int64_t position = 0;
      simdjson::dom::element doc;
      if (parser.parse(items[i]).get(doc) || doc["session"].get_string().get(session) ||
          doc["position"].get_int64().get(position)) {
        continue;  // not one of ours: nothing to stamp
      }
      delivered[std::string(session)].push_back(static_cast<int>(position));
    }
    for (const auto& [session, positions] : delivered) store_->mark_synced(session, positions);
    return results;
  }

  std::string describe() const override { return index_->describe() + " (films)"; }

 private:
  std::shared_ptr<BatchSink> index_;
  std::shared_ptr<FilmStore> store_;
};

class TmdbPipeline {
 public:
  explicit TmdbPipeline(TmdbPipelineOptions options) : options_(std::move(options)) {}

  ~TmdbPipeline() {
    if (sync_) sync_->close();  // flushes what is buffered
  }

  std::string enrich(JobContext& ctx) {
    const FilmRef ref = film_ref(ctx.job().kwargs, kTmdbEnrichTask, true);
    set_up(ctx.broker());
    const std::optional<Film> film = store_->film(ref.session, ref.position);
    if (!film) {
      throw HandlerError("LookupError", "no film " + std::to_string(ref.position) + " in session " +
                                            ref.session + " at " + std::string(store_->kind()) +
                                            " film store");
    }
    if (film->status != FilmStatus::kPending) return result_json(*film, true);

    FilmOutcome outcome;
    if (const std::string refused = auth_refusal(); !refused.empty()) {
      outcome.error = refused;  // the credentials were refused once: no request per film
    } else {
      ctx.progress(0.0, "search", film->input.title);
      try {
        outcome = enrich_film(*client_, film->input, options_.enrich);
      } catch (const TmdbAuthError& e) {
        outcome = FilmOutcome{};
        outcome.error = remember_auth_refusal(e.what());  // the first refusal's words, for all
      } catch (const TmdbError& e) {
        // Transient (5xx, timeouts) after the client's own retries: let the worker retry the
        // job with backoff while it has attempts left; the last attempt records the failure.
        if (ctx.job().attempt < ctx.job().max_attempts) throw;
        outcome = FilmOutcome{};
        outcome.error = e.what();
      }
    }
    const FilmStore::FinishResult finished = store_->finish(ref.session, ref.position, outcome);
    Film done = *film;
    done.status = outcome.status;
    done.outcome = outcome;
    if (finished.changed && sync_ && outcome.status == FilmStatus::kEnriched) {
      sync_->add(sync_document(done));
    }
    if (finished.session_finished && sync_) {
      Job job;
      job.task = std::string(kTmdbSyncTask);
      job.queue = ctx.job().queue;
      job.kwargs = "{\"session\": " + json_quote(ref.session) + "}";
      job.unique_key = "tmdb.sync:" + ref.session;
      ctx.broker().enqueue(job);
    }
    return result_json(done, !finished.changed);
  }

  std::string sync(JobContext& ctx) {
    const FilmRef ref = film_ref(ctx.job().kwargs, kTmdbSyncTask, false);
    set_up(ctx.broker());
    if (!sync_) return "{\"synced\": 0, \"sync\": \"off\"}";
    // First what this worker holds (the session's last films are usually still buffered), so
    // that what is left unsynced after it is only what other workers lost or hold: a film
    // buffered elsewhere is sent twice, the second overwriting the first by id. What the index
    // refuses for good goes to the batcher's dead letter and stays unsynced for a later
    // tmdb.sync.
    sync_->flush();
    const std::vector<Film> films = store_->unsynced(ref.session, kMaxSyncFilms);
    for (const Film& f : films) sync_->add(sync_document(f));
    sync_->flush();
    const std::size_t sent = films.size();
    return "{\"synced\": " + std::to_string(sent) + "}";
  }

 private:
  void set_up(Broker& broker) {
    std::lock_guard lock(mutex_);
    if (client_) return;
    const std::string& url = broker.url();
    TmdbClientOptions client = options_.client;
    if (!options_.rate.empty()) {
      const std::string where = options_.rate_limit_store.empty() ? url : options_.rate_limit_store;
      client.limiter = make_tmdb_rate_limiter(open_rate_limit_store(where), options_.rate);
    }
    if (options_.cache_url != "none") {
      client.cache = open_response_cache(options_.cache_url.empty() ? url : options_.cache_url);
    }
    store_ = open_film_store(options_.film_store_url.empty() ? url : options_.film_store_url);
    if (!options_.sync_url.empty()) {
      ElasticsearchSinkOptions es;
      es.base_url = options_.sync_url;
      es.index = options_.sync_index;
      es.id_field = "id";
      BatcherOptions batching;
      batching.name = "tmdb sync";
      sync_ = std::make_unique<Batcher>(
          std::make_shared<FilmSyncSink>(make_elasticsearch_sink(es), store_), batching);
    }
    client_ = std::make_unique<TmdbClient>(std::move(client));
  }

  std::string auth_refusal() {
    std::lock_guard lock(mutex_);
    return auth_refusal_;
  }

  // remember_auth_refusal keeps the first refusal (logged once) and returns it.
  std::string remember_auth_refusal(const std::string& message) {
    std::lock_guard lock(mutex_);
    if (!auth_refusal_.empty()) return auth_refusal_;
    auth_refusal_ = message;
    log(LogLevel::kError, "tmdb",
        "TMDB refused the credentials; every remaining film of this worker fails without a "
        "request until it restarts: " +
            message);
    return auth_refusal_;
  }

  static std::string result_json(const Film& film, bool already_final) {
    std::string out = "{\"status\": ";
    append_json_string(out, to_string(film.status));
    out += ", \"tmdb_id\": ";
    out += film.outcome.tmdb_id ? std::to_string(*film.outcome.tmdb_id) : "null";
    if (already_final) out += ", \"already_final\": true";
    out += '}';
    return out;
  }

  TmdbPipelineOptions options_;
  std::mutex mutex_;
  std::unique_ptr<TmdbClient> client_;
  std::shared_ptr<FilmStore> store_;
  std::unique_ptr<Batcher> sync_;
  std::string auth_refusal_;
};

}  // namespace

TmdbPipelineOptions TmdbPipelineOptions::from_environment() {
  TmdbPipelineOptions options;
  options.rate = env_or("TMDB_RATE_LIMIT", options.rate);
  options.film_store_url = env_or("CINEJOBS_FILM_STORE", "");
  options.sync_url = env_or("CINEJOBS_SYNC_URL", "");
  options.cache_url = env_or("CINEJOBS_TMDB_CACHE", "");
  return options;
}

std::string enrich_unique_key(std::string_view session_id, int position) {
  return "tmdb.enrich:" + std::string(session_id) + ":" + std::to_string(position);
}

std::string enrich_kwargs(std::string_view session_id, int position) {
  return "{\"session\": " + json_quote(session_id) + ", \"position\": " + std::to_string(position) +
         "}";
}

void register_tmdb_handlers(Worker& worker, TmdbPipelineOptions options) {
  auto pipeline = std::make_shared<TmdbPipeline>(std::move(options));
  worker.register_handler(std::string(kTmdbEnrichTask),
                          [pipeline](JobContext& ctx) { return pipeline->enrich(ctx); });
  worker.register_handler(std::string(kTmdbSyncTask),
                          [pipeline](JobContext& ctx) { return pipeline->sync(ctx); });
}

}  // namespace cinejobs
