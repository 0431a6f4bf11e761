// A flag's pcap (as GET /api/v1/flags/{id}/pcap sends it) decoded into rows: time,
// addresses, ports, protocol and TCP flags. Reads what it understands (Ethernet, VLAN
// tags, IPv4, IPv6, TCP, UDP, ICMP) and says "?" for the rest; a truncated file ends the
// list where it breaks.

const TCP_FLAGS = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

function ipv4(b, o) {
  return [b[o], b[o + 1], b[o + 2], b[o + 3]].join(".");
}

function ipv6(v, o) {
  const parts = [];
  for (let i = 0; i < 8; i++) parts.push(v.getUint16(o + 2 * i).toString(16));
  // The longest run of zero groups as "::".
  let best = [-1, 0];
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && parts[j] === "0") j++;
    if (j - i > best[1]) best = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best[1] < 2) return parts.join(":");
  const head = parts.slice(0, best[0]).join(":");
  const tail = parts.slice(best[0] + best[1]).join(":");
  return head + "::" + tail;
}

function transport(frame, proto, v, b, o, end) {
  const names = { 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6" };
  frame.proto = names[proto] || "proto " + proto;
  if ((proto === 6 || proto === 17) && o + 4 <= end) {
    frame.sport = v.getUint16(o);
    frame.dport = v.getUint16(o + 2);
  }
  if (proto === 6 && o + 14 <= end) {
    const bits = b[o + 13];
    frame.flags = TCP_FLAGS.filter((_, i) => bits & (1 << i)).join(" ");
  }
  if ((proto === 1 || proto === 58) && o + 2 <= end) frame.flags = "type " + b[o] + " code " + b[o + 1];
}

function decodeFrame(frame, v, b, o, end) {
  if (o + 14 > end) return;
  let type = v.getUint16(o + 12);
  o += 14;
  while ((type === 0x8100 || type === 0x88a8) && o + 4 <= end) {
    frame.vlan = v.getUint16(o) & 0x0fff;
    type = v.getUint16(o + 2);
    o += 4;
  }
  if (type === 0x0800 && o + 20 <= end) {
    const ihl = (b[o] & 0x0f) * 4;
    frame.src = ipv4(b, o + 12);
    frame.dst = ipv4(b, o + 16);
    transport(frame, b[o + 9], v, b, o + ihl, end);
  } else if (type === 0x86dd && o + 40 <= end) {
    frame.src = ipv6(v, o + 8);
    frame.dst = ipv6(v, o + 24);
    transport(frame, b[o + 6], v, b, o + 40, end);
  } else if (type === 0x0806) {
    frame.proto = "ARP";
  } else {
    frame.proto = "ethertype 0x" + type.toString(16);
  }
}

// The frames of pcap file `buf` (an ArrayBuffer).
export function decodePcap(buf) {
  const v = new DataView(buf);
  const b = new Uint8Array(buf);
  if (buf.byteLength < 24) return [];
  const magicLe = v.getUint32(0, true);
  const le = magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d;
  const magic = le ? magicLe : v.getUint32(0, false);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error("not a pcap file");
  const nano = magic === 0xa1b23c4d;
  const frames = [];
  for (let o = 24; o + 16 <= buf.byteLength; ) {
    const sec = v.getUint32(o, le);
    const frac = v.getUint32(o + 4, le);
    const incl = v.getUint32(o + 8, le);
    const orig = v.getUint32(o + 12, le);
    const start = o + 16;
    const end = start + incl;
    if (end > buf.byteLength) break;
    const frame = { at: sec + frac / (nano ? 1e9 : 1e6), length: orig, src: "?", dst: "?", proto: "?", sport: "", dport: "", flags: "" };
    decodeFrame(frame, new DataView(buf, 0, end), b, start, end);
    frames.push(frame);
    o = end;
  }
  return frames;
}
