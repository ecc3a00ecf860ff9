//! `histogram_quantile` over classic histograms (`_bucket` series with an `le` label), as Prometheus 3's
//! BucketQuantile computes it, including its coalescing and monotonicity repairs.

use std::collections::HashMap;

use promql_parser::parser::Expr;

use super::eval::{exec, Ctx, Out, Val};
use super::QueryError;
use crate::model::{LabelSet, METRIC_NAME};

/// Differences between bucket counts below this relative size are floating-point noise.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

pub(crate) fn histogram_quantile(ctx: &Ctx, args: &[Box<Expr>]) -> Result<Val, QueryError> {
    let (Some(q), Some(v)) = (args.first(), args.get(1)) else {
        return Err(exec("histogram_quantile needs a quantile and a vector"));
    };
    let q = ctx.eval_scalar(q)?;
    for &q in &q {
        invalid_quantile(ctx, q);
    }
    let input = ctx.eval_vector(v)?;
    // Group the bucket series by their labels without `le` (the name is part of a histogram's
    // identity); skip those whose `le` is not a number (Prometheus only warns about them). Buckets of
    // one group with the same bound in different spellings (`0.2`, `2e-1`) are coalesced.
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    let mut groups: Vec<(LabelSet, Vec<(f64, usize)>)> = Vec::new();
    for (k, s) in input.iter().enumerate() {
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
            ctx.warn(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                s.labels.get("le").unwrap_or_default(),
                s.labels.get(METRIC_NAME).unwrap_or_default()
            ));
            continue;
        };
        let key = s.labels.filtered(|l| l != "le");
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((le, k));
    }
    // Each answer drops the name: two histograms whose names differ only answer under one label
    // set, which `Out` refuses as Prometheus does ("same labelset").
    let mut out = Out::new(ctx.n);
    let idx: Vec<usize> = groups.iter().map(|(l, _)| out.idx(l.filtered(|l| l != METRIC_NAME))).collect();
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (i, &q) in q.iter().enumerate() {
        for ((labels, members), &o) in groups.iter().zip(&idx) {
            buckets.clear();
            buckets.extend(members.iter().filter_map(|&(le, k)| input[k].vals[i].map(|c| (le, c))));
            if !buckets.is_empty() {
                let (v, forced) = bucket_quantile(q, &mut buckets);
                if forced {
                    ctx.info(format!(
                        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see \
                         https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) \
                         for metric name {:?}",
                        labels.get(METRIC_NAME).unwrap_or_default()
                    ));
                }
                out.put(o, i, v)?;
            }
        }
    }
    Ok(Val::Vector(out.finish()))
}

/// Parses an `le` value as Go's strconv.ParseFloat would for the forms exporters write.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

/// Warns of a quantile outside [0, 1] (or NaN), as Prometheus does where it reads one.
pub(crate) fn invalid_quantile(ctx: &Ctx, q: f64) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ctx.warn(format!("PromQL warning: quantile value should be between 0 and 1, got {}", super::go_g(q)));
    }
}

/// Prometheus's BucketQuantile over (upper bound, cumulative count) pairs, and whether the counts
/// had to be made monotonic (a bucket below the one before it: counters scraped apart, or a reset).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return (f64::NAN, false);
    }
    coalesce(buckets);
    let forced = ensure_monotonic(buckets);
    (quantile_of(q, buckets), forced)
}

/// The interpolation of BucketQuantile over sorted, coalesced, monotonic buckets.
fn quantile_of(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket: the first whose count reaches the rank.
    let last = buckets.len() - 1;
    let b = buckets[..last].iter().position(|x| x.1 >= rank).unwrap_or(last);
    if b == last {
        return buckets[last - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Adds up buckets with the same upper bound.
fn coalesce(buckets: &mut Vec<(f64, f64)>) {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => out.push(b),
        }
    }
    *buckets = out;
}

/// Raises any count below an earlier one to it, and flattens differences that are float noise;
/// whether a count was below an earlier one (noise alone is not reported, as in Prometheus).
fn ensure_monotonic(buckets: &mut [(f64, f64)]) -> bool {
    let mut prev = buckets[0].1;
    let mut forced = false;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    forced
}

/// Prometheus's util/almost.Equal.
pub(super) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}
