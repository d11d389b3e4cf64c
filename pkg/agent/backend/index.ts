// Every overlay backend, each registered by its own file when loaded, and the interface they share.
// The agent and the network config import this; a new backend adds its file and one line here.
import './vxlan';
import './host-gw';

export * from './backend';
export { get, has, names, newBackend, register, type BackendFactory } from './registry';
