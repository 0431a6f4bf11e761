//! The document's checks: every figure in a table with its bar and verdict, missing and
//! malformed sections, well-formed SVG, exact formatting.

use std::fs;

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    fields::thousands,
    machine::{utc, Machine},
    render,
    scale::APPLY_PHASES,
    svg::{bar_chart, nice_step, BarGroup, BarRow, Style},
    write_document, APPLY_CHART, CHART_DIR, DOCUMENT, KERNEL_CHART, LATENCY_CHART, NOT_MEASURED,
    THROUGHPUT_CHART,
};

fn machine() -> Machine {
    Machine {
        cpu_model: "Test CPU 9000".into(),
        cpus: 2,
        virtual_machine: true,
        kernel: "Linux 6.18.44-test #1 SMP x86_64".into(),
        memory_kib: Some(24_684_084),
        generated_at: "2026-11-26 18:00:00 UTC".into(),
        measured_at: Some("2026-11-26 17:39:49 UTC".into()),
        commit: "0123456789abcdef".into(),
    }
}

fn kernel_case(name: &str, delta: f64, bar: f64, lengths: &str) -> Value {
    json!({
        "name": name, "prefix_lengths": lengths, "program": "xdp_to_tenant",
        "frame_bytes": 64, "median_case_ns": 21.0 + delta, "median_baseline_ns": 21.0,
        "delta_ns": delta, "ratio": (21.0 + delta) / 21.0, "bar_ns": bar,
        "pass": delta <= bar, "case_ns": [40], "baseline_ns": [21],
    })
}

/// A report with the kernel cases and nothing else.
fn kernel_only() -> Value {
    json!({
        "kernel": "6.18.44-test", "cpu": 0, "pairs": 21, "repeat": 1_000_000,
        "bar_ns": 35.0, "new_flow_bar_ns": 150.0, "tenants": {"count": 10_000},
        "cases": [
            kernel_case("known tenant v4 & co <fast>", 19.0, 35.0, "/32 | /64"),
            kernel_case("new flow v4", 160.0, 150.0, "/32 | /64"),
            kernel_case("two probes miss", 22.0, 35.0, "/32 /24 | /64 /48"),
        ],
    })
}

fn full() -> Value {
    let mut r = kernel_only();
    r["detection_latency"] = json!({
        "bar_ms": 1000.0, "timeout_s": 5.0, "runs": 3,
        "method": "t0 just before the attack tool is spawned",
        "cases": [
            {"case": "syn_flood_out", "kind": "flood_out", "tenant": "globex",
             "action": "block", "attack": "hping3 -S --flood",
             "flag_ms": [72.3, null, 59.0], "drop_ms": [74.2, 51.7, null],
             "median_flag_ms": 72.3, "median_drop_ms": 74.2, "pass": true},
            {"case": "scan", "kind": "scan", "tenant": "globex", "action": "flag",
             "flag_ms": [null, null, 900.0], "drop_ms": null,
             "median_flag_ms": null, "median_drop_ms": null, "pass": false},
        ],
    });
    r["metrics_render"] = json!({
        "bar_ms": 50.0, "tenants": 10_000, "runs": 15, "profile": "release",
        "scrape_ms": 30.5, "daemon_get_ms": 61.0, "pass": false,
        "parts": [
            {"name": "read", "top_k": null, "median_ms": 10.25, "bytes": null},
            {"name": "render", "top_k": 1000, "median_ms": 20.25, "bytes": 2_440_034},
            {"name": "daemon", "top_k": 1000, "median_ms": 61.0, "bytes": null},
        ],
    });
    let side = |label: &str, mpps: f64| {
        json!({
            "label": label, "receiver": "xdp_to_tenant", "generator": "xdp_bench_gen",
            "frame_bytes": 64, "cores": 1, "median_mpps": mpps,
            "median_packets": 1_000_000, "median_refused_by_ring": 12,
            "median_seconds": 0.5, "mpps": [mpps, mpps + 0.1],
        })
    };
    r["throughput"] = json!({
        "method": "XDP live frames redirected through veth pairs",
        "pairs": 9, "ms_per_generator_run": 250, "frames_per_call": 32_768, "batch": 64,
        "cpus": 2,
        "limits": ["2 vCPUs: generator and receiver share a CPU"],
        "cases": [
            {"name": "drop path vs bare XDP_DROP", "ratio": 0.85, "bar": 0.8,
             "bar_text": ">= 0.8 x XDP_DROP", "pass": true,
             "case": side("warden drop path", 2.0), "baseline": side("XDP_DROP", 2.4)},
            {"name": "meter and pass vs bare XDP_PASS", "ratio": 0.7, "bar": 0.9,
             "bar_text": ">= 0.9 x XDP_PASS", "pass": false,
             "case": side("warden pass", 1.4), "baseline": side("XDP_PASS", 2.0)},
            {"name": "XDP_DROP, 2 cores vs 1 core", "ratio": 1.2, "bar": null,
             "bar_text": "(what this machine allows)", "pass": true,
             "case": side("XDP_DROP, 2 cores", 2.9), "baseline": side("XDP_DROP", 2.4)},
        ],
    });
    r["scale"] = json!({
        "method": "policy apply: the daemon's enforce path",
        "profile": "release",
        "policy": "each tenant one IPv4 /32",
        "cases": [
            {"case": "policy apply, 1000 tenants, to first enforced packet",
             "figure": 12.5, "unit": "ms", "bar": null, "pass": null},
            {"case": "policy apply, 100000 tenants, to first enforced packet",
             "figure": 2500.0, "unit": "ms", "bar": 2000.0, "pass": false},
            {"case": "full counter read, 100000 tenants",
             "figure": 120.0, "unit": "ms", "bar": 250.0, "pass": true},
        ],
        "apply": [{
            "tenants": 1000, "runs": 5,
            "phases": APPLY_PHASES.iter().chain(&["total"]).map(|p| {
                (format!("{p}_ms"), json!({"median": 1.5, "runs": [1.5]}))
            }).collect::<serde_json::Map<_, _>>(),
        }],
        "counter_read": {"tenants": 100_000, "median_ms": 120.0, "runs_ms": [120.0]},
        "daemon": null,
    });
    let fig = |name: &str, bar: Option<f64>, runs: &[f64], median: f64, worst: f64| {
        json!({"name": name, "bar_ms": bar, "runs_ms": runs, "median_ms": median,
               "worst_ms": worst, "pass": bar.map(|b| median <= b)})
    };
    r["console"] = json!({
        "method": "the console in headless Chromium", "daemon": "release", "flags": 10_000,
        "runs": 5, "api_runs": 3, "first_page_bar_ms": 1000.0, "filter_bar_ms": 300.0,
        "browser": [
            fig("first page: sign-in click to the rows shown", Some(1000.0),
                &[420.4, 380.0, 390.2, 401.0, 1210.9], 401.0, 1210.9),
            fig("first page: its API calls and render (the page's account)", None,
                &[40.0, 41.0, 42.0, 43.0, 44.0], 42.0, 44.0),
            fig("kind filter change to the new rows", Some(300.0),
                &[120.0, 110.0, 130.0, 150.0, 100.0], 120.0, 150.0),
            fig("state filter change to the new rows", Some(300.0),
                &[310.0, 300.0, 340.0, 320.0, 305.0], 310.0, 340.0),
        ],
        "server": [
            fig("server: GET /api/v1/flags?limit=50", None, &[2.4, 2.6, 3.1], 2.6, 3.1),
        ],
        "pass": false,
    });
    r
}

/// A minimal XML well-formedness check: every tag closed in order, one root,
/// attributes quoted, no raw `<` or bare `&` in text or attribute values.
fn well_formed(doc: &str) -> std::result::Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = doc.trim();
    let check_text = |t: &str| -> std::result::Result<(), String> {
        let mut r = t;
        while let Some(i) = r.find('&') {
            r = &r[i + 1..];
            let end = r.find(';').ok_or(format!("bare & in {t:?}"))?;
            let entity = &r[..end];
            if !["amp", "lt", "gt", "quot", "apos"].contains(&entity) && !entity.starts_with('#') {
                return Err(format!("unknown entity &{entity}; in {t:?}"));
            }
        }
        Ok(())
    };
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            check_text(rest)?;
            if stack.is_empty() {
                return Err(format!("text outside the root: {rest:?}"));
            }
            break;
        };
        let text = &rest[..open];
        if !text.trim().is_empty() && stack.is_empty() {
            return Err(format!("text outside the root: {text:?}"));
        }
        check_text(text)?;
        rest = &rest[open..];
        let close = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err(format!("bad tag name {name:?}"));
        }
        // Attributes: name="value" pairs, nothing else.
        let mut attrs = tag[name_end..].trim();
        while !attrs.is_empty() {
            let eq = attrs
                .find("=\"")
                .ok_or(format!("unquoted attribute in <{tag}>"))?;
            let attr = attrs[..eq].trim();
            if attr.is_empty() || attr.contains(char::is_whitespace) {
                return Err(format!("bad attribute name {attr:?} in <{tag}>"));
            }
            let value_end = attrs[eq + 2..]
                .find('"')
                .ok_or(format!("unterminated value in <{tag}>"))?;
            let value = &attrs[eq + 2..eq + 2 + value_end];
            if value.contains('<') {
                return Err(format!("raw < in attribute of <{tag}>"));
            }
            check_text(value)?;
            attrs = attrs[eq + 2 + value_end + 1..].trim_start();
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!("<{open}> never closed"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

#[test]
fn the_well_formedness_check_rejects_broken_xml() {
    assert!(well_formed(r#"<svg a="1"><text>x &amp; y</text></svg>"#).is_ok());
    for bad in [
        r#"<svg><text>x</svg>"#,
        r#"<svg><text>a & b</text></svg>"#,
        r#"<svg><text x=1>a</text></svg>"#,
        r#"<svg><text>a < b</text></svg>"#,
        r#"<svg></svg><svg></svg>"#,
        r#"<svg>"#,
    ] {
        assert!(well_formed(bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn every_figure_is_in_a_table_with_its_bar_and_verdict() -> Result<()> {
    let doc = render(&full(), &machine())?;
    let md = &doc.markdown;
    // Kernel cases: figures, bar, verdict; `|` in a cell escaped.
    assert!(md.contains(
        "| known tenant v4 & co <fast> | /32 \\| /64 | xdp_to_tenant | 64 B | 40.0 | 21.0 \
         | +19.0 | 1.90 | 35 ns | PASS |"
    ));
    assert!(md.contains("| new flow v4 | /32 \\| /64 | xdp_to_tenant | 64 B | 181.0 | 21.0 | +160.0 | 8.62 | 150 ns | **FAIL** |"));
    // Latency: medians, every run, missed runs named.
    assert!(md.contains(
        "| syn_flood_out | hping3 -S --flood | flood_out | block | 72 | 74 | 72, missed, 59 \
         | 74, 52, missed | 1000 ms | PASS |"
    ));
    assert!(md.contains("| scan |  | scan | flag | missed (> 5 s) | - | missed, missed, 900 | - | 1000 ms | **FAIL** |"));
    // /metrics and scale.
    assert!(md.contains("| read + render (default K) | 30.50 | - |"));
    assert!(md.contains("| render (K = 1000) | 20.25 | 2.3 MiB |"));
    assert!(md.contains(
        "| policy apply, 100000 tenants, to first enforced packet | 2500.0 ms | <= 2000 ms \
         | **FAIL** |"
    ));
    assert!(md.contains(
        "| policy apply, 1000 tenants, to first enforced packet | 12.5 ms | - | no bar |"
    ));
    assert!(
        md.contains("| 1,000 | 5 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 |")
    );
    assert!(md.contains("Daemon memory: not measured in this run."));
    // Console: median, worst, every run, the bar on the median; no bar, no verdict.
    assert!(md.contains(
        "| first page: sign-in click to the rows shown | 401.0 | 1210.9 \
         | 420.4, 380.0, 390.2, 401.0, 1210.9 | 1000 ms | PASS |"
    ));
    assert!(md.contains(
        "| state filter change to the new rows | 310.0 | 340.0 \
         | 310.0, 300.0, 340.0, 320.0, 305.0 | 300 ms | **FAIL** |"
    ));
    assert!(md.contains(
        "| server: GET /api/v1/flags?limit=50 | 2.60 | 3.10 | 2.40, 2.60, 3.10 | - | no bar |"
    ));
    assert!(md.contains(
        "| console, 10,000 flags: state filter change to the new rows | median <= 300 ms \
         | 310 ms (worst 340) | **FAIL** |"
    ));
    // Summary: 3 kernel + 2 throughput + 2 latency + 2 metrics + 2 scale + 3 console
    // verdicts (the barless ones are not verdicts); failures counted.
    assert!(
        md.contains("8 of 14 figures within their bar; **6 over**."),
        "{md}"
    );
    // The machine and the method.
    assert!(md.contains("| CPU | Test CPU 9000 |"));
    assert!(md.contains("| Memory | 23.5 GiB |"));
    assert!(md.contains("| Git commit | 0123456789abcdef |"));
    assert!(md.contains("ABBA order"));
    assert!(md.contains("As the report states it: policy apply: the daemon's enforce path"));
    // Throughput: the comparison, each side with its runs, the runtime's notes.
    assert!(md.contains(
        "| drop path vs bare XDP_DROP | warden drop path | 2.000 | XDP_DROP | 2.400 | 0.85 \
         | >= 0.8 x XDP_DROP | PASS |"
    ));
    assert!(md.contains(
        "| meter and pass vs bare XDP_PASS | warden pass | 1.400 | XDP_PASS | 2.000 | 0.70 \
         | >= 0.9 x XDP_PASS | **FAIL** |"
    ));
    assert!(md.contains(
        "| drop path vs bare XDP_DROP | baseline | xdp_to_tenant | xdp_bench_gen | 64 B | 1 \
         | 1,000,000 | 0.500 | 12 | - | 2.40, 2.50 |"
    ));
    assert!(md.contains("- Note: 2 vCPUs: generator and receiver share a CPU"));
    assert!(md.contains(
        "| XDP_DROP, 2 cores vs 1 core | XDP_DROP, 2 cores | 2.900 | XDP_DROP | 2.400 | 1.20 \
         | (what this machine allows) | reference, no bar |"
    ));
    let files: Vec<_> = doc.charts.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(
        files,
        [
            "kernel-micro.svg",
            "throughput.svg",
            "detection-latency.svg",
            "policy-apply.svg"
        ]
    );
    for f in files {
        assert!(
            md.contains(&format!("]({CHART_DIR}/{f})")),
            "{f} not linked"
        );
    }
    Ok(())
}

#[test]
fn a_missing_section_says_not_measured_and_invents_nothing() -> Result<()> {
    let doc = render(&kernel_only(), &machine())?;
    let md = &doc.markdown;
    for title in [
        "Throughput on live frames",
        "Detection latency",
        "`/metrics` with many tenants",
        "Scale: policy apply, counter reads, daemon memory",
        "Console: a queue of 10,000 flags in a browser",
        "Fleet: 3-member etcd, controller, 20 host and 2 gateway nodes",
        "Fleet at scale: 100,000 tenants in etcd",
    ] {
        assert!(
            md.contains(&format!("## {title}\n\n{NOT_MEASURED}\n")),
            "{title} in {md}"
        );
    }
    assert!(md.contains("2 of 3 figures within their bar; **1 over**."));
    assert_eq!(doc.charts.len(), 1);
    assert!(!md.contains("detection-latency.svg"));

    // A null section (the latency labs skipped) is missing too.
    let mut r = kernel_only();
    r["detection_latency"] = Value::Null;
    assert!(render(&r, &machine())?
        .markdown
        .contains(&format!("## Detection latency\n\n{NOT_MEASURED}\n")));

    // Nothing at all: every section missing, no verdict, no chart.
    let doc = render(&json!({}), &machine())?;
    assert!(doc
        .markdown
        .contains("No figure with a bar was measured in this run."));
    assert_eq!(
        doc.markdown
            .matches(&format!("\n\n{NOT_MEASURED}\n"))
            .count(),
        8
    );
    assert!(doc.charts.is_empty());
    Ok(())
}

#[test]
fn a_throughput_part_the_kernel_refused_reads_not_measured_never_pass() -> Result<()> {
    let reason = "this kernel (Linux 6.18.44-fc-v1300) refuses BPF_PROG_TEST_RUN with \
                  BPF_F_TEST_XDP_LIVE_FRAMES: EPERM (Operation not permitted, os error 1)";
    let mut r = full();
    r["throughput"] = json!({
        "method": "XDP live frames redirected through veth pairs",
        "not_measured": reason,
        "pairs": 15, "ms_per_generator_run": 250, "frames_per_call": 32_768, "batch": 64,
        "cpus": 2, "limits": [], "compute_scaling_2_vs_1": null,
        "cases": [
            {"name": "drop path vs bare XDP_DROP", "bar": 0.8,
             "bar_text": ">= 0.8 x XDP_DROP", "not_measured": reason},
            {"name": "XDP_DROP, 2 cores vs 1 core", "bar": null,
             "bar_text": "(what this machine allows)", "not_measured": reason},
        ],
    });
    let doc = render(&r, &machine())?;
    let md = &doc.markdown;
    assert!(
        md.contains(&format!(
            "**Not measured in this run**: {reason}.\n\n| comparison | bar | verdict |"
        )),
        "{md}"
    );
    // Every comparison's row says not measured and why; the barred one is in the
    // summary as not measured, counted apart from passes and failures.
    assert!(md.contains(&format!(
        "| drop path vs bare XDP_DROP | >= 0.8 x XDP_DROP | not measured: {reason} |"
    )));
    assert!(md.contains(&format!(
        "| XDP_DROP, 2 cores vs 1 core | (what this machine allows) | not measured: {reason} |"
    )));
    assert!(md.contains(&format!(
        "| throughput: drop path vs bare XDP_DROP | >= 0.8 x XDP_DROP | not measured: \
         {reason} | **not measured** |"
    )));
    assert!(
        md.contains("7 of 13 figures within their bar; **5 over**; **1 not measured**."),
        "{md}"
    );
    assert!(md
        .lines()
        .filter(|l| l.contains("drop path vs bare XDP_DROP"))
        .all(|l| !l.contains("PASS") && !l.contains("FAIL")));
    // No chart from a section without figures.
    assert!(doc.charts.iter().all(|c| c.file != THROUGHPUT_CHART));

    // A case with figures in a section that was not measured, or one without a reason,
    // is refused.
    let mut bad = r.clone();
    bad["throughput"]["cases"][0]
        .as_object_mut()
        .map(|c| c.remove("not_measured"));
    let e = format!("{:#}", render(&bad, &machine()).err().expect("must fail"));
    assert!(e.contains("throughput") && e.contains("drop path"), "{e}");
    let mut bad = full();
    bad["throughput"]["cases"][0]["not_measured"] = json!(reason);
    let e = format!("{:#}", render(&bad, &machine()).err().expect("must fail"));
    assert!(
        e.contains("throughput") && e.contains("not measured"),
        "{e}"
    );
    Ok(())
}

#[test]
fn a_malformed_section_is_an_error_naming_the_key() {
    let mut r = full();
    r["cases"][1].as_object_mut().map(|c| c.remove("delta_ns"));
    let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
    assert!(e.contains("`cases`") && e.contains("delta_ns"), "{e}");

    let mut r = full();
    r["detection_latency"]["cases"][0]["flag_ms"] = json!(["soon"]);
    let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
    assert!(
        e.contains("detection_latency") && e.contains("flag_ms"),
        "{e}"
    );

    let mut r = full();
    r["throughput"]["cases"][0]["pass"] = json!(false);
    let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
    assert!(e.contains("throughput") && e.contains("pass"), "{e}");

    let mut r = full();
    r["scale"]["apply"][0]["phases"]
        .as_object_mut()
        .map(|p| p.remove("place_ms"));
    let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
    assert!(e.contains("scale") && e.contains("place_ms"), "{e}");

    let mut r = full();
    r["metrics_render"]["pass"] = json!(true);
    assert!(
        render(&r, &machine()).is_err(),
        "a pass the figures contradict"
    );

    let mut r = full();
    r["console"]["browser"][2]["runs_ms"] = json!([120.0, "slow"]);
    let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
    assert!(e.contains("console") && e.contains("runs_ms"), "{e}");

    let mut r = full();
    r["console"]["browser"][3]["pass"] = json!(true);
    let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
    assert!(e.contains("console") && e.contains("pass"), "{e}");

    assert!(render(&json!([1, 2]), &machine()).is_err());
}

#[test]
fn every_chart_is_well_formed_svg_with_escaped_labels() -> Result<()> {
    let doc = render(&full(), &machine())?;
    for c in &doc.charts {
        well_formed(&c.svg).map_err(|e| anyhow::anyhow!("{}: {e}", c.file))?;
        assert!(c
            .svg
            .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
    let kernel = &doc.charts[0].svg;
    assert!(kernel.contains("known tenant v4 &amp; co &lt;fast&gt;"));
    // One bar per case, and the bar of each drawn as a dashed mark.
    assert_eq!(kernel.matches("<rect ").count(), 1 + 3);
    assert_eq!(kernel.matches("stroke-dasharray").count(), 3);
    // A failing case is drawn in the failure colour.
    assert_eq!(kernel.matches(Style::Fail.fill()).count(), 1);
    // A missed run has no bar but says so.
    let throughput = &doc.charts[1].svg;
    assert_eq!(throughput.matches("<rect ").count(), 1 + 6);
    assert_eq!(throughput.matches(Style::Baseline.fill()).count(), 3);
    assert_eq!(throughput.matches(Style::Plain.fill()).count(), 1);
    assert!(throughput.contains("1.40 Mpps (0.70 x)"));
    let latency = &doc.charts[2].svg;
    assert_eq!(latency.matches("<rect ").count(), 1 + 5);
    assert_eq!(latency.matches("missed (&gt; 5 s)").count(), 4);
    Ok(())
}

#[test]
fn the_scale_covers_every_figure_and_negative_figures() {
    let chart = bar_chart(
        "t",
        "ns",
        &[BarGroup {
            title: "g".into(),
            rows: vec![
                BarRow {
                    label: "neg".into(),
                    value: Some(-3.0),
                    value_text: "-3".into(),
                    limit: None,
                    style: Style::Plain,
                },
                BarRow {
                    label: "pos".into(),
                    value: Some(42.0),
                    value_text: "42".into(),
                    limit: Some(50.0),
                    style: Style::Pass,
                },
            ],
        }],
    );
    assert!(well_formed(&chart).is_ok());
    // Ticks from -20 to 60 by 20: the most negative figure and the limit both fit.
    assert!(chart.contains(">-20</text>") && chart.contains(">60</text>"));
    assert!(!chart.contains(">-40</text>") && !chart.contains(">80</text>"));
    assert_eq!(nice_step(7.0), 2.0);
    assert_eq!(nice_step(170.0), 50.0);
    assert_eq!(nice_step(0.3), 0.1);
}

#[test]
fn writing_replaces_the_charts_and_removes_those_of_missing_sections() -> Result<()> {
    let root = std::env::temp_dir().join(format!("warden-report-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let written = write_document(&root, &render(&full(), &machine())?)?;
    assert_eq!(written.len(), 5);
    assert!(root.join(CHART_DIR).join(THROUGHPUT_CHART).exists());
    // A later run without throughput or scale: their charts go, the rest are rewritten.
    let doc = render(&kernel_only(), &machine())?;
    let written = write_document(&root, &doc)?;
    let dir = root.join(CHART_DIR);
    assert_eq!(written, [dir.join(KERNEL_CHART), root.join(DOCUMENT)]);
    for gone in [THROUGHPUT_CHART, LATENCY_CHART, APPLY_CHART] {
        assert!(!dir.join(gone).exists(), "{gone} left behind");
    }
    assert_eq!(fs::read_to_string(root.join(DOCUMENT))?, doc.markdown);
    fs::remove_dir_all(&root)?;
    Ok(())
}

#[test]
fn dates_and_counts_are_formatted_exactly() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_868_800), "2000-03-01 00:00:00 UTC");
    assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
    assert_eq!(utc(1_795_716_919), "2026-11-26 18:15:19 UTC");
    assert_eq!(thousands(100_000.0), "100,000");
    assert_eq!(thousands(999.0), "999");
    assert_eq!(thousands(1_234_567.0), "1,234,567");
    assert_eq!(thousands(2.5), "2.5");
}

#[test]
fn the_fleet_scale_section_shows_each_figure_with_its_verdict_and_refuses_a_wrong_pass(
) -> Result<()> {
    let figure = |name: &str, bar: f64, runs: &[f64], median: f64, pass: bool| {
        json!({"name": name, "bar_ms": bar, "runs_ms": runs, "median_ms": median,
               "worst_ms": runs.iter().copied().fold(f64::NAN, f64::max), "pass": pass})
    };
    let mut r = kernel_only();
    r["fleet_scale"] = json!({
        "method": "a lab", "daemon": "release", "tenants": 100003, "flags": 10000,
        "change_apply_ms": [800.0],
        "figures": [
            figure("gateway node: cold start", 5000.0, &[3858.0], 3858.0, true),
            figure("one-tenant change", 1000.0, &[1949.0, 2646.0, 1475.0], 1949.0, false),
        ],
        "pass": false,
    });
    let md = render(&r, &machine())?.markdown;
    assert!(
        md.contains("## Fleet at scale: 100,000 tenants in etcd"),
        "{md}"
    );
    assert!(md.contains("gateway node: cold start"), "{md}");
    assert!(
        md.contains("fleet, 100,003 tenants: one-tenant change"),
        "{md}"
    );
    r["fleet_scale"]["figures"][1]["pass"] = json!(true);
    assert!(
        render(&r, &machine()).is_err(),
        "a pass over the bar is refused"
    );
    Ok(())
}
