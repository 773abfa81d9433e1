/**
 * secrets-dispatcher: the public module for other Deno programs. Protocol names and types
 * (bus names, object paths, interfaces, error names, request records) and typed clients:
 * {@link DispatcherClient} for the desktop user's side on the system bus (ask for a signature and
 * wait for the human's decision), {@link AdminClient} for the companion's side on its private bus
 * (list, approve, deny, history).
 *
 * ```ts
 * import { DispatcherClient } from "./mod.ts";
 * const client = await DispatcherClient.connect({
 *   address: "unix:path=/run/dbus/system_bus_socket",
 *   uid: Deno.uid()!,
 * });
 * const req = await client.requestSign(payloadBytes, { keySpec: "0xABCD...", context: {} });
 * const { outcome, signature } = await req.completed;
 * ```
 *
 * @module
 */

export * from "./lib/protocol.ts";
export {
  DispatcherClient,
  type PendingRequest,
  type RequestCompletion,
  type RequestEventListener,
  RequestRefusedError,
} from "./lib/dispatcher_client.ts";
export { AdminClient, AdminError, AdminUnreachableError } from "./lib/admin_client.ts";
export { BusUnavailableError, DBusCallError } from "./lib/dbus.ts";
export { parsePayload, PayloadError } from "./lib/payload.ts";
