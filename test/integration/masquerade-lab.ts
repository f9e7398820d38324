/**
 * The product's founding story as a little network, made intermittent for
 * --on-drop: client c → router r → server s. The router's server-facing side
 * has no address; its POSTROUTING rule is either SNAT to the right address
 * or a MASQUERADE that borrows the address of another interface (rx), and
 * the server's reverse-path filter drops the second kind. Used on this
 * kernel (test/integration/on-drop.test.ts) and through Kubernetes mode on
 * the real cluster, whose node is this kernel (test/e2e/cluster/on-drop.test.ts).
 */
import { type NetLab, run } from './netlab';

export interface MasqueradeLab {
  client: string;
  router: string;
  server: string;
  /** The client's address, the server's, the right SNAT source and the borrowed one. */
  clientIp: string;
  serverIp: string;
  right: string;
  borrowed: string;
  port: number;
  /** SNAT to the right address (false) or MASQUERADE, which borrows rx's (true). */
  masquerade(on: boolean): void;
}

export async function masqueradeLab(lab: NetLab): Promise<MasqueradeLab> {
  const c = lab.ns('c');
  const r = lab.ns('r');
  const s = lab.ns('s');
  const right = lab.v4(2, 1);
  const serverIp = lab.v4(2, 2);
  const borrowed = `172.30.${lab.octet}.1`;
  const port = 9000 + lab.octet;
  // rx first: MASQUERADE out of an interface without an address borrows the
  // first usable one in the router's device order, and that is rx's.
  run('ip', ['link', 'add', 'rx', 'netns', r, 'type', 'veth', 'peer', 'name', 'rxp', 'netns', r]);
  lab.exec(r, 'ip', ['addr', 'add', `${borrowed}/24`, 'dev', 'rx']);
  lab.exec(r, 'ip', ['link', 'set', 'rx', 'up']);
  lab.exec(r, 'ip', ['link', 'set', 'rxp', 'up']);
  lab.link(c, r, 1);
  lab.link(r, s, 2);
  // The router's server-facing side has no address of its own.
  lab.exec(r, 'ip', ['addr', 'flush', 'dev', 'va2']);
  lab.exec(r, 'ip', ['route', 'add', `${lab.v4(2, 0)}/24`, 'dev', 'va2']);
  lab.exec(c, 'ip', ['route', 'add', 'default', 'via', lab.v4(1, 2)]);
  lab.exec(r, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  lab.exec(r, 'iptables', [
    '-t',
    'nat',
    '-A',
    'POSTROUTING',
    '-o',
    'va2',
    '-j',
    'SNAT',
    '--to-source',
    right,
  ]);
  lab.exec(s, 'sysctl', ['-q', '-w', 'net.ipv4.conf.all.rp_filter=1']);
  lab.exec(s, 'sysctl', ['-q', '-w', 'net.ipv4.conf.vb2.rp_filter=1']);
  // Without an address the router's ARP would be refused by that same filter: a static neighbour.
  const mac = lab.exec(s, 'cat', ['/sys/class/net/vb2/address']).trim();
  lab.exec(r, 'ip', ['neigh', 'replace', serverIp, 'lladdr', mac, 'dev', 'va2', 'nud', 'permanent']);
  await lab.serve(s, ['udp-serve', String(port)]);
  return {
    client: c,
    router: r,
    server: s,
    clientIp: lab.v4(1, 1),
    serverIp,
    right,
    borrowed,
    port,
    masquerade: (on) =>
      lab.exec(r, 'iptables', [
        '-t',
        'nat',
        '-R',
        'POSTROUTING',
        '1',
        '-o',
        'va2',
        '-j',
        ...(on ? ['MASQUERADE'] : ['SNAT', '--to-source', right]),
      ]),
  };
}

/** One datagram every 200 ms from a new source port, and the rule switching every 1.5 s from SNAT on. */
export function intermittent(lab: NetLab, m: MasqueradeLab): { stop(): void } {
  m.masquerade(false);
  const sender = lab.background(m.client, ['udp-every', m.serverIp, String(m.port), '200']);
  let on = false;
  const toggler = setInterval(() => {
    on = !on;
    m.masquerade(on);
  }, 1500);
  return {
    stop() {
      clearInterval(toggler);
      sender.kill();
    },
  };
}
