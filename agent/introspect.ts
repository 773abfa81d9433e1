/**
 * Introspection data (D-Bus specification, "Introspection Data Format") for the objects the
 * agent serves, so `busctl tree`, d-feet and introspecting bindings see the Secret Service
 * tree. Member signatures follow the spec's interface definitions (libsecret's
 * `org.freedesktop.Secrets.xml`).
 *
 * @module
 */

import { Iface } from "../lib/secret_service.ts";

const DOCTYPE = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n` +
  ` "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">`;

const STANDARD = `  <interface name="${Iface.Introspectable}">
    <method name="Introspect"><arg name="xml_data" type="s" direction="out"/></method>
  </interface>
  <interface name="${Iface.Peer}">
    <method name="Ping"/>
    <method name="GetMachineId"><arg name="machine_uuid" type="s" direction="out"/></method>
  </interface>
  <interface name="${Iface.Properties}">
    <method name="Get">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="out"/>
    </method>
    <method name="GetAll">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="properties" type="a{sv}" direction="out"/>
    </method>
    <method name="Set">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="in"/>
    </method>
    <signal name="PropertiesChanged">
      <arg name="interface_name" type="s"/>
      <arg name="changed_properties" type="a{sv}"/>
      <arg name="invalidated_properties" type="as"/>
    </signal>
  </interface>
`;

const SERVICE = `  <interface name="${Iface.Service}">
    <method name="OpenSession">
      <arg name="algorithm" type="s" direction="in"/>
      <arg name="input" type="v" direction="in"/>
      <arg name="output" type="v" direction="out"/>
      <arg name="result" type="o" direction="out"/>
    </method>
    <method name="CreateCollection">
      <arg name="properties" type="a{sv}" direction="in"/>
      <arg name="alias" type="s" direction="in"/>
      <arg name="collection" type="o" direction="out"/>
      <arg name="prompt" type="o" direction="out"/>
    </method>
    <method name="SearchItems">
      <arg name="attributes" type="a{ss}" direction="in"/>
      <arg name="unlocked" type="ao" direction="out"/>
      <arg name="locked" type="ao" direction="out"/>
    </method>
    <method name="Unlock">
      <arg name="objects" type="ao" direction="in"/>
      <arg name="unlocked" type="ao" direction="out"/>
      <arg name="prompt" type="o" direction="out"/>
    </method>
    <method name="Lock">
      <arg name="objects" type="ao" direction="in"/>
      <arg name="locked" type="ao" direction="out"/>
      <arg name="Prompt" type="o" direction="out"/>
    </method>
    <method name="GetSecrets">
      <arg name="items" type="ao" direction="in"/>
      <arg name="session" type="o" direction="in"/>
      <arg name="secrets" type="a{o(oayays)}" direction="out"/>
    </method>
    <method name="ReadAlias">
      <arg name="name" type="s" direction="in"/>
      <arg name="collection" type="o" direction="out"/>
    </method>
    <method name="SetAlias">
      <arg name="name" type="s" direction="in"/>
      <arg name="collection" type="o" direction="in"/>
    </method>
    <property name="Collections" type="ao" access="read"/>
    <signal name="CollectionCreated"><arg name="collection" type="o"/></signal>
    <signal name="CollectionDeleted"><arg name="collection" type="o"/></signal>
    <signal name="CollectionChanged"><arg name="collection" type="o"/></signal>
  </interface>
`;

const COLLECTION = `  <interface name="${Iface.Collection}">
    <method name="Delete"><arg name="prompt" type="o" direction="out"/></method>
    <method name="SearchItems">
      <arg name="attributes" type="a{ss}" direction="in"/>
      <arg name="results" type="ao" direction="out"/>
    </method>
    <method name="CreateItem">
      <arg name="properties" type="a{sv}" direction="in"/>
      <arg name="secret" type="(oayays)" direction="in"/>
      <arg name="replace" type="b" direction="in"/>
      <arg name="item" type="o" direction="out"/>
      <arg name="prompt" type="o" direction="out"/>
    </method>
    <property name="Items" type="ao" access="read"/>
    <property name="Label" type="s" access="readwrite"/>
    <property name="Locked" type="b" access="read"/>
    <property name="Created" type="t" access="read"/>
    <property name="Modified" type="t" access="read"/>
    <signal name="ItemCreated"><arg name="item" type="o"/></signal>
    <signal name="ItemDeleted"><arg name="item" type="o"/></signal>
    <signal name="ItemChanged"><arg name="item" type="o"/></signal>
  </interface>
`;

const ITEM = `  <interface name="${Iface.Item}">
    <method name="Delete"><arg name="Prompt" type="o" direction="out"/></method>
    <method name="GetSecret">
      <arg name="session" type="o" direction="in"/>
      <arg name="secret" type="(oayays)" direction="out"/>
    </method>
    <method name="SetSecret"><arg name="secret" type="(oayays)" direction="in"/></method>
    <property name="Locked" type="b" access="read"/>
    <property name="Attributes" type="a{ss}" access="readwrite"/>
    <property name="Label" type="s" access="readwrite"/>
    <property name="Created" type="t" access="read"/>
    <property name="Modified" type="t" access="read"/>
  </interface>
`;

const SESSION = `  <interface name="${Iface.Session}">
    <method name="Close"/>
  </interface>
`;

const PROMPT = `  <interface name="${Iface.Prompt}">
    <method name="Prompt"><arg name="window-id" type="s" direction="in"/></method>
    <method name="Dismiss"/>
    <signal name="Completed">
      <arg name="dismissed" type="b"/>
      <arg name="result" type="v"/>
    </signal>
  </interface>
`;

/** What kind of object a node is (decides its interfaces). */
export type NodeKind = "none" | "service" | "collection" | "item" | "session" | "prompt";

const INTERFACES: Record<NodeKind, string> = {
  none: "",
  service: SERVICE,
  collection: COLLECTION,
  item: ITEM,
  session: SESSION,
  prompt: PROMPT,
};

/**
 * The introspection XML of one node.
 *
 * @param kind which Secret Service interface the node has (`none` for a plain parent node)
 * @param children the names of its child nodes (one path element each)
 */
export function introspectXml(kind: NodeKind, children: string[]): string {
  const nodes = [...new Set(children)].sort().map((c) => `  <node name="${c}"/>\n`).join("");
  return `${DOCTYPE}\n<node>\n${STANDARD}${INTERFACES[kind]}${nodes}</node>\n`;
}
