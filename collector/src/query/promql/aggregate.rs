//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`, `quantile`,
//! `topk`, `bottomk`, `count_values`) with `by`/`without`, computed as Prometheus 3 computes them.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{exec, unsupported, Ctx, Out, Series, Val};
use super::QueryError;
use crate::model::{LabelSet, METRIC_NAME};

/// Prometheus's kahanSumInc (Neumaier's variant): adds `inc` to `sum` with compensation `c`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Prometheus's quantile over a set of values (sorted here, NaN first as Go's sort puts it).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// How series are grouped: `by` keeps only the listed labels, `without` drops them and the name.
struct Grouping {
    by: bool,
    names: Vec<String>,
}

impl Grouping {
    fn key(&self, l: &LabelSet) -> LabelSet {
        if self.by {
            l.filtered(|k| self.names.iter().any(|n| n == k))
        } else {
            l.filtered(|k| k != METRIC_NAME && !self.names.iter().any(|n| n == k))
        }
    }
}

pub(crate) fn eval_aggregate(ctx: &Ctx, a: &AggregateExpr) -> Result<Val, QueryError> {
    let op = a.op.to_string();
    let grouping = match &a.modifier {
        Some(LabelModifier::Include(ls)) => Grouping { by: true, names: ls.labels.clone() },
        Some(LabelModifier::Exclude(ls)) => Grouping { by: false, names: ls.labels.clone() },
        None => Grouping { by: true, names: Vec::new() },
    };
    match op.as_str() {
        "sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar" => {
            let input = ctx.eval_vector(&a.expr)?;
            simple(ctx, &op, &grouping, input)
        }
        "quantile" | "topk" | "bottomk" => {
            let param = a.param.as_ref().ok_or_else(|| exec(format!("{op} needs a parameter")))?;
            let p = ctx.eval_scalar(param)?;
            let input = ctx.eval_vector(&a.expr)?;
            if op == "quantile" {
                for &q in &p {
                    super::histogram::invalid_quantile(ctx, q);
                }
                quantile_agg(ctx, &grouping, input, &p)
            } else {
                top_bottom(ctx, op == "topk", &grouping, input, &p)
            }
        }
        "limitk" | "limit_ratio" => {
            let param = a.param.as_ref().ok_or_else(|| exec(format!("{op} needs a parameter")))?;
            // Prometheus 3.0 takes these two's parameter at the first step for the whole range.
            let mut p = ctx.eval_scalar(param)?;
            if let Some(&first) = p.first() {
                p.fill(first);
            }
            let input = ctx.eval_vector(&a.expr)?;
            if op == "limitk" {
                limitk(ctx, &grouping, input, &p)
            } else {
                limit_ratio(ctx, input, &p)
            }
        }
        "count_values" => {
            let param = a.param.as_ref().ok_or_else(|| exec("count_values needs a label name"))?;
            let label = ctx.eval_string(param)?;
            if label.is_empty() {
                return Err(exec(format!("invalid label name {label:?}")));
            }
            let input = ctx.eval_vector(&a.expr)?;
            count_values(ctx, &grouping, &label, input)
        }
        other => Err(unsupported(format!("aggregation \"{other}\" is not supported yet"))),
    }
}

/// Numbers each group and returns each input series' group and the groups' labels.
fn groups(grouping: &Grouping, input: &[Series]) -> (Vec<usize>, Vec<LabelSet>) {
    let mut index: HashMap<LabelSet, usize> = HashMap::new();
    let mut labels = Vec::new();
    let member = input
        .iter()
        .map(|s| {
            let key = grouping.key(&s.labels);
            *index.entry(key.clone()).or_insert_with(|| {
                labels.push(key);
                labels.len() - 1
            })
        })
        .collect();
    (member, labels)
}

/// Which groups' output series lose their name with delayed name removal (a name kept by
/// `by (__name__)`): those with a member marked so (Prometheus 3.9's rule).
fn group_marks(input: &[Series], member: &[usize], ngroups: usize) -> Vec<bool> {
    let mut marks = vec![false; ngroups];
    for (s, &g) in input.iter().zip(member) {
        marks[g] |= s.drop_name;
    }
    marks
}

/// An empty output series for each input series, keeping its labels and mark.
fn empty_like(input: &[Series], n: usize) -> Vec<Series> {
    input.iter().map(|s| Series { labels: s.labels.clone(), vals: vec![None; n], drop_name: s.drop_name }).collect()
}

/// One group's running state at one step, as Prometheus's groupedAggregation keeps it.
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    value: f64,
    kahan_c: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
}

impl Acc {
    fn add(&mut self, op: &str, f: f64) {
        if !self.seen {
            *self = Acc { seen: true, value: f, kahan_c: 0.0, mean: f, count: 1.0, incremental_mean: false };
            match op {
                // A NaN or infinite member makes the group's deviation NaN, as in Prometheus 3.
                "stddev" | "stdvar" => self.value = if f.is_finite() { 0.0 } else { f64::NAN },
                "group" => self.value = 1.0,
                _ => {}
            }
            return;
        }
        match op {
            "sum" => (self.value, self.kahan_c) = kahan_inc(f, self.value, self.kahan_c),
            "avg" => {
                self.count += 1.0;
                if !self.incremental_mean {
                    let (v, c) = kahan_inc(f, self.value, self.kahan_c);
                    if !v.is_infinite() {
                        (self.value, self.kahan_c) = (v, c);
                        return;
                    }
                    // The sum would overflow: continue as an incremental mean.
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan_c /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.kahan_c) = kahan_inc(f / self.count, q * self.mean, q * self.kahan_c);
            }
            "max" if self.value < f || self.value.is_nan() => self.value = f,
            "min" if self.value > f || self.value.is_nan() => self.value = f,
            "count" => self.count += 1.0,
            "stddev" | "stdvar" if !f.is_finite() => {
                self.count += 1.0;
                self.value = f64::NAN;
            }
            "stddev" | "stdvar" => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            _ => {} // group, and min/max when the value stays
        }
    }

    fn result(&self, op: &str) -> f64 {
        match op {
            "sum" => self.value + self.kahan_c,
            "avg" if self.incremental_mean => self.mean + self.kahan_c,
            "avg" => self.value / self.count + self.kahan_c / self.count,
            "count" => self.count,
            "stdvar" => self.value / self.count,
            "stddev" => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

fn simple(ctx: &Ctx, op: &str, grouping: &Grouping, input: Vec<Series>) -> Result<Val, QueryError> {
    let (member, labels) = groups(grouping, &input);
    let n = ctx.n;
    let mut acc = vec![Acc::default(); labels.len() * n];
    for (s, &g) in input.iter().zip(&member) {
        let row = &mut acc[g * n..(g + 1) * n];
        for (a, v) in row.iter_mut().zip(&s.vals) {
            if let Some(v) = v {
                a.add(op, *v);
            }
        }
    }
    let marks = group_marks(&input, &member, labels.len());
    let out = labels
        .into_iter()
        .zip(marks)
        .enumerate()
        .map(|(g, (labels, drop_name))| Series {
            labels,
            vals: acc[g * n..(g + 1) * n].iter().map(|a| a.seen.then(|| a.result(op))).collect(),
            drop_name,
        })
        .collect();
    Ok(Val::Vector(out))
}

/// Members of each group, by input index.
fn members(member: &[usize], ngroups: usize) -> Vec<Vec<usize>> {
    let mut m = vec![Vec::new(); ngroups];
    for (i, &g) in member.iter().enumerate() {
        m[g].push(i);
    }
    m
}

fn quantile_agg(ctx: &Ctx, grouping: &Grouping, input: Vec<Series>, phi: &[f64]) -> Result<Val, QueryError> {
    let (member, labels) = groups(grouping, &input);
    let by_group = members(&member, labels.len());
    let marks = group_marks(&input, &member, labels.len());
    let mut out: Vec<Series> = labels
        .into_iter()
        .zip(marks)
        .map(|(labels, drop_name)| Series { labels, vals: vec![None; ctx.n], drop_name })
        .collect();
    let mut buf = Vec::new();
    for (i, &phi) in phi.iter().enumerate() {
        for (g, ms) in by_group.iter().enumerate() {
            buf.clear();
            buf.extend(ms.iter().filter_map(|&k| input[k].vals[i]));
            if !buf.is_empty() {
                out[g].vals[i] = Some(quantile(phi, &mut buf));
            }
        }
    }
    Ok(Val::Vector(out))
}

/// `topk`/`bottomk`: per step and group the k largest (smallest) elements, keeping their labels. NaN is
/// never preferred over a number; among equal values the smaller label set wins, so that an instant
/// query and the same step of a range query pick the same series.
/// The count a `topk`, `bottomk` or `limitk` parameter asks for: below 1 none, NaN an error.
fn k_param(k: f64) -> Result<usize, QueryError> {
    if k.is_nan() {
        return Err(exec("Parameter value is NaN"));
    }
    Ok(if k >= usize::MAX as f64 { usize::MAX } else { k.max(0.0) as usize })
}

fn top_bottom(ctx: &Ctx, top: bool, grouping: &Grouping, input: Vec<Series>, k: &[f64]) -> Result<Val, QueryError> {
    let (member, labels) = groups(grouping, &input);
    let by_group = members(&member, labels.len());
    let mut out = empty_like(&input, ctx.n);
    let mut buf: Vec<(f64, usize)> = Vec::new();
    for (i, &k) in k.iter().enumerate() {
        let kk = k_param(k)?;
        if kk == 0 {
            continue;
        }
        for ms in &by_group {
            buf.clear();
            buf.extend(ms.iter().filter_map(|&s| input[s].vals[i].map(|v| (v, s))));
            buf.sort_by(|a, b| {
                let ord = match (a.0.is_nan(), b.0.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if top => b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal),
                    _ => a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal),
                };
                ord.then_with(|| input[a.1].labels.cmp(&input[b.1].labels))
            });
            for &(v, s) in buf.iter().take(kk) {
                out[s].vals[i] = Some(v);
            }
        }
    }
    Ok(Val::Vector(out.into_iter().filter(|s| s.vals.iter().any(Option::is_some)).collect()))
}

/// `limitk(k, v)`: the first k series of each group (in label order), with their labels and values.
fn limitk(ctx: &Ctx, grouping: &Grouping, input: Vec<Series>, k: &[f64]) -> Result<Val, QueryError> {
    let (member, labels) = groups(grouping, &input);
    let mut by_group = members(&member, labels.len());
    for ms in &mut by_group {
        ms.sort_by(|a, b| input[*a].labels.cmp(&input[*b].labels));
    }
    let mut out = empty_like(&input, ctx.n);
    for (i, &k) in k.iter().enumerate() {
        let kk = k_param(k)?;
        for ms in &by_group {
            for &s in ms.iter().filter(|&&s| input[s].vals[i].is_some()).take(kk) {
                out[s].vals[i] = input[s].vals[i];
            }
        }
    }
    Ok(Val::Vector(out.into_iter().filter(|s| s.vals.iter().any(Option::is_some)).collect()))
}

/// `limit_ratio(r, v)`: a deterministic sample of about r of the series, chosen by where the hash of
/// each one's labels falls in [0, 1) (Prometheus's labels hash, so both keep the same series);
/// a negative r keeps the complement of -r's choice. |r| is capped at 1.
fn limit_ratio(ctx: &Ctx, input: Vec<Series>, r: &[f64]) -> Result<Val, QueryError> {
    let offsets: Vec<f64> = input.iter().map(|s| label_hash(&s.labels) as f64 / u64::MAX as f64).collect();
    let mut out = empty_like(&input, ctx.n);
    for (i, &r) in r.iter().enumerate() {
        if r.is_nan() {
            return Err(exec("Ratio value is NaN"));
        }
        let capped = r.clamp(-1.0, 1.0);
        if capped != r {
            ctx.warn(format!(
                "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                super::go_g(r),
                super::go_g(capped)
            ));
        }
        let r = capped;
        for (s, &offset) in offsets.iter().enumerate() {
            let keep = (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r);
            if keep && r != 0.0 {
                out[s].vals[i] = input[s].vals[i];
            }
        }
    }
    Ok(Val::Vector(out.into_iter().filter(|s| s.vals.iter().any(Option::is_some)).collect()))
}

/// Prometheus's `labels.Hash`: xxHash64 of every name and value, each followed by 0xff, in name order.
fn label_hash(l: &LabelSet) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for (k, v) in l.iter() {
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

fn count_values(ctx: &Ctx, grouping: &Grouping, label: &str, input: Vec<Series>) -> Result<Val, QueryError> {
    let mut g = Grouping { by: grouping.by, names: grouping.names.clone() };
    if g.by {
        g.names.push(label.to_string());
    }
    let mut out = Out::new(ctx.n);
    let mut counts: HashMap<LabelSet, f64> = HashMap::new();
    for i in 0..ctx.n {
        counts.clear();
        for s in &input {
            if let Some(v) = s.vals[i] {
                let mut l = s.labels.clone();
                l.set(label, &crate::model::format_value(v));
                *counts.entry(g.key(&l)).or_insert(0.0) += 1.0;
            }
        }
        for (labels, c) in counts.drain() {
            let idx = out.idx(labels);
            out.put(idx, i, c)?;
        }
    }
    Ok(Val::Vector(out.finish()))
}
