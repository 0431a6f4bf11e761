//! Spam counted by connections, not only by distinct servers: a tenant allowed to send
//! mail that sends 200 messages to 10 mail servers (one connection each, swaks against
//! aiosmtpd) is flagged `spam`, while the allow-listed mail server sending as many to its
//! relays stays quiet.

use std::{thread, time::Duration};

use anyhow::{ensure, Result};
use warden_tests::{
    evidence::Evidence,
    topology::outside,
    workloads::{send_mail, smtp_sink},
};

use crate::detection::{crossed, DetectionLab, BENIGN_SETTLE, FLAG_TIMEOUT};

/// 200 messages, round robin over 10 servers from `first` (live outside hosts).
fn two_hundred_to_ten(first: u32) -> Vec<String> {
    let servers = outside::live_v4_range(first, 10);
    (0..200).map(|i| servers[i % 10].clone()).collect()
}

#[test]
fn two_hundred_messages_to_10_mail_servers_are_flagged_as_spam_by_connections() -> Result<()> {
    let lab = DetectionLab::start("    smtp: allow\n", "")?;
    let _sink = smtp_sink(&lab.ext)?;
    let messages = two_hundred_to_ten(0x311);
    let sent = send_mail(
        &lab.globex,
        &messages,
        "news@globex.lab.test",
        "someone@outside.lab.test",
        Duration::from_secs(180),
    )?;
    println!(
        "spam to 10 servers: {} of 200 messages delivered in {:.1?}",
        sent.ok, sent.elapsed
    );
    ensure!(
        sent.ok >= 150,
        "only {} messages got through: SMTP is not allowed?",
        sent.ok
    );
    let (id, took) = lab.expect_flag("globex", "spam", FLAG_TIMEOUT)?;
    let ev = Evidence::of(&lab, id)?;
    println!(
        "spam to 10 servers: flag found {took:.1?} after the last message; figures {:?}, thresholds {:?}, top targets {:?}",
        ev.figures, ev.thresholds, ev.targets
    );
    crossed(&ev)?;
    let connections = ev
        .figures
        .iter()
        .find(|(n, _)| n == "connections")
        .map_or(0.0, |(_, v)| *v);
    ensure!(
        connections > 100.0,
        "flagged, but not by connections ({connections}): {:?}",
        ev.figures
    );
    ensure!(
        ev.targets.iter().any(|t| messages.contains(t)),
        "spam flag's top targets {:?} name none of the mail servers",
        ev.targets
    );
    lab.expect_counted("globex", "spam")
}

#[test]
fn an_allow_listed_mail_server_sending_200_messages_to_its_relays_raises_no_flag() -> Result<()> {
    let relays = "198.19.3.0/24";
    let lab = DetectionLab::start(&format!("    smtp: allow\n    allow: [{relays}]\n"), "")?;
    let _sink = smtp_sink(&lab.ext)?;
    let messages = two_hundred_to_ten(0x311);
    let t = send_mail(
        &lab.globex,
        &messages,
        "mailer@globex.lab.test",
        "someone@outside.lab.test",
        Duration::from_secs(180),
    )?;
    println!(
        "mail server: {} of 200 messages to 10 relays in {relays} in {:.1?}",
        t.ok, t.elapsed
    );
    t.all_ok("mail to the allow-listed relays")?;
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("an allow-listed mail server sending 200 messages")?;
    println!("allow-listed mail server, 200 messages: 0 flags");
    lab.control_scan()
}
