//! Functions over range vectors (`rate`, `increase`, `delta`, `irate`, `idelta`, `deriv`,
//! `predict_linear`, `changes`, `resets`, the `*_over_time` family, `absent_over_time`), window by window.

use promql_parser::parser::Expr;

use super::aggregate::{kahan_inc, quantile};
use super::eval::{exec, merge_series, Ctx, Series, Val};
use super::functions::absent_labels;
use super::QueryError;

/// Whether `name` is a function over a range vector that this module evaluates.
pub(crate) fn is_range_fn(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "last_over_time"
            | "present_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "mad_over_time"
            | "double_exponential_smoothing"
            | "absent_over_time"
    )
}

pub(crate) fn eval_range_fn(ctx: &Ctx, name: &str, args: &[Box<Expr>]) -> Result<Val, QueryError> {
    let (marg, scalar_arg) = match name {
        "quantile_over_time" => (1, Some(0)),
        "predict_linear" | "double_exponential_smoothing" => (0, Some(1)),
        _ => (0, None),
    };
    let range_arg = args.get(marg).ok_or_else(|| exec(format!("{name} needs a range vector")))?;
    let param = match scalar_arg {
        Some(i) => ctx.eval_scalar(args.get(i).ok_or_else(|| exec(format!("{name} needs a scalar")))?)?,
        None => Vec::new(),
    };
    // double_exponential_smoothing's trend factor; both factors must lie in (0, 1).
    let trend = match name {
        "double_exponential_smoothing" => {
            let tf = ctx.eval_scalar(args.get(2).ok_or_else(|| exec(format!("{name} needs a trend factor")))?)?;
            if let Some(sf) = param.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
                return Err(exec(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}")));
            }
            if let Some(tf) = tf.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
                return Err(exec(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}")));
            }
            tf
        }
        _ => Vec::new(),
    };
    let rd = ctx.range_arg(range_arg)?;
    if name == "absent_over_time" {
        let mut any = vec![false; ctx.n];
        for s in &rd.series {
            ctx.windows(&rd, &s.samples, |i, ts, _, _| any[i] |= !ts.is_empty());
        }
        let vals: Vec<Option<f64>> = any.into_iter().map(|a| (!a).then_some(1.0)).collect();
        let labels = absent_labels(&args[0]);
        return Ok(Val::Vector(merge_series(vec![Series::new(labels, vals)], false)?));
    }
    let range_s = rd.range as f64 / 1000.0;
    let keep_name = name == "last_over_time";
    let mut out = Vec::with_capacity(rd.series.len());
    for (k, s) in rd.series.iter().enumerate() {
        let mut vals = vec![None; ctx.n];
        ctx.windows(&rd, &s.samples, |i, ts, vs, e| {
            if ts.is_empty() {
                return;
            }
            // predict_linear predicts from the step's time even when `@` fixes its window (Prometheus
            // counts it among the functions `@` does not make step-invariant).
            let eval_t = ctx.ts(i);
            vals[i] = match name {
                "rate" => extrapolated_rate(ts, vs, e.saturating_sub(rd.range), e, range_s, true, true),
                "increase" => extrapolated_rate(ts, vs, e.saturating_sub(rd.range), e, range_s, true, false),
                "delta" => extrapolated_rate(ts, vs, e.saturating_sub(rd.range), e, range_s, false, false),
                "irate" => instant_value(ts, vs, true),
                "idelta" => instant_value(ts, vs, false),
                "deriv" => (ts.len() >= 2).then(|| linear_regression(ts, vs, ts[0]).0),
                "predict_linear" => (ts.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(ts, vs, eval_t);
                    slope * param[i] + intercept
                }),
                "changes" => {
                    Some(vs.windows(2).filter(|w| w[1] != w[0] && !(w[1].is_nan() && w[0].is_nan())).count() as f64)
                }
                "resets" => Some(vs.windows(2).filter(|w| w[1] < w[0]).count() as f64),
                "avg_over_time" => Some(mean(vs)),
                "sum_over_time" => {
                    let (sum, c) = vs.iter().fold((0.0, 0.0), |(s, c), &v| kahan_inc(v, s, c));
                    Some(if sum.is_infinite() { sum } else { sum + c })
                }
                "min_over_time" => Some(vs[1..].iter().fold(vs[0], |m, &v| if m > v || m.is_nan() { v } else { m })),
                "max_over_time" => Some(vs[1..].iter().fold(vs[0], |m, &v| if m < v || m.is_nan() { v } else { m })),
                "count_over_time" => Some(vs.len() as f64),
                "last_over_time" => Some(vs[vs.len() - 1]),
                "present_over_time" => Some(1.0),
                "stdvar_over_time" => Some(variance(vs)),
                "stddev_over_time" => Some(variance(vs).sqrt()),
                "quantile_over_time" => {
                    super::histogram::invalid_quantile(ctx, param[i]);
                    Some(quantile(param[i], &mut vs.to_vec()))
                }
                "mad_over_time" => {
                    let median = quantile(0.5, &mut vs.to_vec());
                    Some(quantile(0.5, &mut vs.iter().map(|v| (v - median).abs()).collect::<Vec<_>>()))
                }
                "double_exponential_smoothing" => double_exponential_smoothing(vs, param[i], trend[i]),
                _ => None,
            };
        });
        if matches!(name, "rate" | "increase") && vals.iter().any(Option::is_some) {
            possible_non_counter(ctx, &s.labels);
        }
        // last_over_time keeps the name, unless a subquery's inner expression had dropped it.
        out.push(if keep_name && !rd.drops_name(k) {
            Series::new(s.labels.clone(), vals)
        } else if keep_name {
            Series { labels: s.labels.clone(), vals, drop_name: true }
        } else {
            ctx.unnamed(s.labels.clone(), vals)
        });
    }
    Ok(Val::Vector(merge_series(out, true)?))
}

/// Prometheus's info on `rate` or `increase` of a series whose name does not end as a counter's (or a
/// classic histogram's parts) do: it is likely a gauge, whose rate means little.
fn possible_non_counter(ctx: &Ctx, labels: &crate::model::LabelSet) {
    let name = labels.get(crate::model::METRIC_NAME).unwrap_or_default();
    if !name.is_empty() && !["_total", "_sum", "_count", "_bucket"].iter().any(|s| name.ends_with(s)) {
        ctx.info(format!(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
        ));
    }
}

/// Holt's linear smoothing of a window's values with smoothing factor `sf` and trend factor `tf`,
/// as Prometheus 3's double_exponential_smoothing (formerly holt_winters): the last smoothed value.
fn double_exponential_smoothing(vs: &[f64], sf: f64, tf: f64) -> Option<f64> {
    if vs.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, vs[0], vs[1] - vs[0]);
    for (i, &v) in vs.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * v + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    Some(s1)
}

/// Prometheus's extrapolatedRate for `rate`, `increase` (counters) and `delta` (gauges), over the samples
/// of the window (range_start, range_end].
pub(crate) fn extrapolated_rate(
    ts: &[i64],
    vs: &[f64],
    range_start: i64,
    range_end: i64,
    range_s: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if ts.len() < 2 {
        return None;
    }
    let last = ts.len() - 1;
    let (first_t, last_t) = (ts[0], ts[last]);
    let mut result = vs[last] - vs[0];
    if is_counter {
        // A drop means the counter restarted from zero: add back the value it had before.
        let mut prev = vs[0];
        for &cur in &vs[1..] {
            if cur < prev {
                result += prev;
            }
            prev = cur;
        }
    }
    let mut duration_to_start = first_t.saturating_sub(range_start) as f64 / 1000.0;
    let mut duration_to_end = range_end.saturating_sub(last_t) as f64 / 1000.0;
    let sampled_interval = last_t.saturating_sub(first_t) as f64 / 1000.0;
    let average_between = sampled_interval / last as f64;
    // Extrapolate to a window edge only if a sample there is about as near as the average spacing
    // (10% slack); otherwise assume the series starts or ends inside, half an interval away.
    let threshold = average_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between / 2.0;
    }
    if is_counter && result > 0.0 && vs[0] >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past where it would have been zero.
        let duration_to_zero = sampled_interval * (vs[0] / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between / 2.0;
    }
    let extrapolate_to = sampled_interval + duration_to_start + duration_to_end;
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= range_s;
    }
    Some(result * factor)
}

/// Prometheus's instantValue for `irate` and `idelta`: from the last two samples.
fn instant_value(ts: &[i64], vs: &[f64], is_rate: bool) -> Option<f64> {
    let n = ts.len();
    if n < 2 {
        return None;
    }
    let (pt, pv, lt, lv) = (ts[n - 2], vs[n - 2], ts[n - 1], vs[n - 1]);
    let mut v = if is_rate && lv < pv { lv } else { lv - pv };
    let interval = lt.saturating_sub(pt);
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Prometheus's linearRegression: slope and the intercept at `intercept_t` (ms), with Kahan sums.
fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut cxy, mut sum_x2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = vs[0];
    let mut const_y = true;
    for (i, (&t, &y)) in ts.iter().zip(vs).enumerate() {
        if const_y && i > 0 && y != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = t.saturating_sub(intercept_t) as f64 / 1e3;
        (sum_x, cx) = kahan_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_inc(y, sum_y, cy);
        (sum_xy, cxy) = kahan_inc(x * y, sum_xy, cxy);
        (sum_x2, cx2) = kahan_inc(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// avg_over_time: a Kahan-compensated mean that turns incremental when the sum would overflow.
fn mean(vs: &[f64]) -> f64 {
    if vs.len() == 1 {
        return vs[0];
    }
    let (mut sum, mut c, mut mean, mut incremental) = (vs[0], 0.0, 0.0, false);
    let mut count = 1.0;
    for &f in &vs[1..] {
        count += 1.0;
        if !incremental {
            let (s, cc) = kahan_inc(f, sum, c);
            if !s.is_infinite() {
                (sum, c) = (s, cc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// stdvar_over_time: Welford's algorithm with Kahan-compensated mean and sum of squares.
fn variance(vs: &[f64]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &f in vs {
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}
