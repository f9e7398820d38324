/**
 * Overlays in Kubernetes mode: which nodes say they run one, and the inner
 * filter a node's helper gets for a target with pod addresses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { innerFilter, nodeOverlay } from '../../../src/kube/overlay';
import type { TraceFlags } from '../../../src/trace/flags';
import { buildRequest, type TraceRequest } from '../../../src/trace/request';

const node = (annotations: Record<string, string>) => ({ metadata: { name: 'n1', annotations } });
const request = (r: Partial<TraceRequest>): TraceRequest => ({
  pcapFilter: 'tcp port 443',
  backend: 'auto',
  trackSkb: false,
  allKmods: false,
  outputStack: false,
  ...r,
});

test('flannel and Calico say so in their annotations; a plain node does not', () => {
  assert.equal(nodeOverlay(node({ 'flannel.alpha.coreos.com/backend-type': 'vxlan' })), 'flannel vxlan');
  assert.equal(nodeOverlay(node({ 'flannel.alpha.coreos.com/backend-type': 'host-gw' })), undefined);
  assert.equal(nodeOverlay(node({ 'projectcalico.org/IPv4IPIPTunnelAddr': '10.244.1.0' })), 'calico ipip');
  assert.equal(nodeOverlay(node({ 'projectcalico.org/IPv4VXLANTunnelAddr': '10.244.1.0' })), 'calico vxlan');
  assert.equal(nodeOverlay(node({})), undefined);
  assert.equal(nodeOverlay({}), undefined);
});

/** The request as src/trace/request.ts builds it for a target with these addresses. */
const built = (addresses: string[], tunnelFilter?: string): TraceRequest =>
  buildRequest(
    {
      backend: 'auto',
      output: 'text',
      proto: 'tcp',
      port: ['443'],
      'tunnel-filter': tunnelFilter,
    } as TraceFlags,
    { expression: '' },
    { nodes: ['n1'], addresses, kubernetes: true, warnings: [] },
  );

test("a pod target on an overlay node: the trace's filter with the pod's addresses, also for the inner packet", () => {
  assert.equal(
    innerFilter(['10.244.1.5'], built(['10.244.1.5']), true),
    '(host 10.244.1.5) and tcp and (port 443)',
  );
  // Not an overlay, or no pod addresses (node/NAME): nothing to add.
  assert.equal(innerFilter(['10.244.1.5'], built(['10.244.1.5']), false), undefined);
  assert.equal(innerFilter([], built([]), true), undefined);
  assert.equal(innerFilter([], request({}), true), undefined);
});

test('a --tunnel-filter given is kept, with the pod addresses added when the target has them', () => {
  assert.equal(
    innerFilter(['10.244.1.5', 'fd00::5'], built(['10.244.1.5', 'fd00::5'], 'udp port 53'), false),
    '(host 10.244.1.5 or host fd00::5) and (udp port 53)',
  );
  assert.equal(innerFilter([], built([], 'udp port 53'), false), 'udp port 53');
});
