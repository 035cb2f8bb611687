//! Plans: the pure building blocks behind `depends_on`, handoffs, `output_schema` and
//! retries (issue #8). Nothing here touches the registry, a worker or the store; the
//! agent worker and the registry call these functions.
//!
//! - [`redact`]: [`Redactor`] replaces configured provider keys and common key shapes
//!   with `[REDACTED]` in any text flotilla hands onward.

pub mod redact;

pub use redact::Redactor;
