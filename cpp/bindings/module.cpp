#include "bindings.hpp"
#include "cinejobs/batcher.hpp"
#include "cinejobs/errors.hpp"
#include "cinejobs/redact.hpp"
#include "cinejobs/tmdb_client.hpp"

namespace cinejobs::bindings {

void register_errors(py::module_& m) {
  // The one redaction, so the Python layer masks exactly what the core's messages mask.
  m.def(
      "redact_url", [](std::string_view text) { return redact_url(text); }, py::arg("text"),
      "The text (a URL, a connection string or a message quoting them) with every secret in "
      "it replaced by ***.");
  // The exception classes live in Python (cinejobs/errors.py) so users can import them without
  // the extension; the translator raises those classes for the C++ ones.
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    auto raise = [](const char* name, const std::exception& e) {
      py::object cls = py::module_::import("cinejobs.errors").attr(name);
      PyErr_SetString(cls.ptr(), e.what());
    };
    try {
      std::rethrow_exception(p);
    } catch (const UniqueConflict& e) {
      py::object cls = py::module_::import("cinejobs.errors").attr("UniqueConflict");
      py::object exc = cls(e.what(), e.unique_key(), e.existing_id());
      PyErr_SetObject(cls.ptr(), exc.ptr());
    } catch (const UnknownTask& e) {
      raise("UnknownTask", e);
    } catch (const InvalidPayload& e) {
      raise("InvalidPayload", e);
    } catch (const JobNotFound& e) {
      raise("JobNotFound", e);
    } catch (const BrokerUnavailable& e) {
      raise("BrokerUnavailable", e);
    } catch (const ConfigError& e) {
      raise("ConfigError", e);
    } catch (const JobCancelled& e) {
      raise("JobCancelled", e);
    } catch (const JobTimeout& e) {
      raise("JobTimeout", e);
    } catch (const BatcherFull& e) {
      raise("BatcherFull", e);
    } catch (const BatcherClosed& e) {
      raise("BatcherClosed", e);
    } catch (const TmdbAuthError& e) {
      raise("TmdbAuthError", e);
    } catch (const TmdbError& e) {
      raise("TmdbError", e);
    } catch (const Error& e) {
      raise("CinejobsError", e);
    }
  });
}

}  // namespace cinejobs::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "cinejobs C++ core (private: use the cinejobs package)";
  m.attr("__version__") = "0.1.0";
  cinejobs::bindings::register_errors(m);
  cinejobs::bindings::register_broker(m);
  cinejobs::bindings::register_worker(m);
  cinejobs::bindings::register_postgres(m);
  cinejobs::bindings::register_batcher(m);
  cinejobs::bindings::register_celery(m);
  cinejobs::bindings::register_tmdb(m);
  cinejobs::bindings::register_scheduler(m);
  cinejobs::bindings::register_rate_limit(m);
  cinejobs::bindings::register_tmdb_client(m);
  cinejobs::bindings::register_films(m);
  cinejobs::bindings::register_metrics(m);
}
