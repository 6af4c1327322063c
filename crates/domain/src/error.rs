//! Errors as one line for logs: the error and every cause under it.

use std::error::Error;

/// An error and every `source()` under it, joined by `: `.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
