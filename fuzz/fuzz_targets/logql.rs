//! LogQL: any text parses or fails with a column; a query that parses runs its pipeline over any
//! line without panicking, and metric queries parse or fail the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_collector::model::LabelSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The query, then a line to run it on, separated by the first newline.
    let (query, line) = text.split_once('\n').unwrap_or((text, "{\"level\":\"error\",\"n\":5} a=b c=\"d\""));
    match lookout_collector::query::logql::parse(query) {
        Ok(q) => {
            let labels = LabelSet::from_pairs([("service", "api"), ("stream", "stdout")]);
            let _ = q.process(&labels, line);
        }
        Err(e) => assert!(e.col >= 1 && e.col <= query.chars().count() + 1, "column {} outside the query", e.col),
    }
    let _ = lookout_collector::query::logql::metric::parse(query);
});
