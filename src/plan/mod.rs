//! Plans: the pure building blocks behind `depends_on`, handoffs and `output_schema`
//! (issue #8). Nothing here touches the registry, a worker or the store; the registry
//! and the agent worker call these functions (retries and eviction live in the worker).
//!
//! - [`redact`]: [`Redactor`] replaces configured provider keys and common key shapes
//!   with `[REDACTED]` in any text flotilla hands onward.
//! - [`handoff`]: [`DepAnswer::prepare`] cleans one dependency's answer (invisible
//!   characters out, secrets redacted, capped to `handoff_max_chars`, injection-like text
//!   flagged); [`compose`] writes a dependent's first instruction: its task plus the
//!   answers, fenced and marked as untrusted data.
//! - [`graph`]: `validate` checks a `create_agents` plan (duplicates, taken names,
//!   unknown or self dependencies, cycles) and orders it.
//! - [`checkpoint`]: [`Checkpoint`] compiles an `output_schema` and checks a final answer
//!   against it; a [`CheckFailure`] says what failed, for events and for the model.

pub mod checkpoint;
pub mod graph;
pub mod handoff;
pub mod redact;
