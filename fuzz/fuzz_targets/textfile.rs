//! Any bytes as a node_exporter textfile: samples or an error naming a line, never a panic; what is
//! read writes back and reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_agent::metrics::node::textfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    match textfile::parse(text) {
        Err(e) => assert!(e.line >= 1 && e.line <= lines, "{e} of {lines} lines"),
        Ok(samples) => {
            let mut again = String::new();
            for s in &samples {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                    .collect();
                let value = match s.value {
                    v if v.is_nan() => "NaN".to_string(),
                    v if v.is_infinite() => (if v > 0.0 { "+Inf" } else { "-Inf" }).to_string(),
                    v => format!("{v:e}"),
                };
                again.push_str(&format!("{}{{{}}} {value}\n", s.name, labels.join(",")));
            }
            let back = textfile::parse(&again).expect("written samples read back");
            assert_eq!(back.len(), samples.len());
            for (a, b) in back.iter().zip(&samples) {
                assert!(a.name == b.name && a.labels == b.labels);
                assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
            }
        }
    }
});
