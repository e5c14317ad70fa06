// The query, settings and variable models shared with the Go backend (grafana-plugin/pkg).
// Field names and values are the wire contract: the backend decodes each target's JSON
// into the same camelCase fields.
import { DataSourceJsonData, SelectableValue } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

export type QueryType = 'alerts' | 'counts' | 'hosts' | 'audit' | 'sql';
export type TripwireType = 'FILE' | 'NETWORK' | 'PROCESS' | 'HOST' | '';
export type Severity = 'INFO' | 'WARN' | 'CRITICAL' | '';
export type TriageStatus = 'open' | 'acknowledged' | 'resolved' | '';
export type GroupBy = 'type' | 'severity' | 'host' | 'rule';

/**
 * One panel target. Every field is optional in a saved dashboard; getDefaultQuery and
 * the editor fill in the rest. Filters left empty ('') match everything.
 */
export interface TripwireQuery extends DataQuery {
  queryType?: QueryType;
  host?: string;
  tripwireType?: TripwireType;
  severity?: Severity;
  rule?: string;
  status?: TriageStatus;
  text?: string;
  /** counts only */
  groupBy?: GroupBy;
  /** alerts and audit only: the newest rows first, at most this many */
  limit?: number;
  /** sql only; may use the macros in SQL_MACROS */
  rawSql?: string;
  /** alerts only: the response frame carries a Grafana Live channel that new alerts stream into */
  live?: boolean;
}

export const DEFAULT_LIMIT = 100;
/** The collector's largest page; the backend refuses a larger limit. */
export const MAX_LIMIT = 1000;

export const DEFAULT_SQL =
  'SELECT ts AS time, hostname, rule_name, severity, tripwire_type\nFROM alerts\nWHERE $__timeFilter(ts)\nORDER BY ts DESC\nLIMIT 100';

export const DEFAULT_QUERY: Partial<TripwireQuery> = {
  queryType: 'alerts',
  host: '',
  tripwireType: '',
  severity: '',
  rule: '',
  status: '',
  text: '',
  limit: DEFAULT_LIMIT,
  live: false,
};

/** The builder filters each query type takes; the SQL mode takes none. */
export type Filter = 'host' | 'tripwireType' | 'severity' | 'rule' | 'status' | 'text' | 'groupBy' | 'limit' | 'live';

export const FILTERS: Record<QueryType, Filter[]> = {
  alerts: ['host', 'tripwireType', 'severity', 'rule', 'status', 'text', 'limit', 'live'],
  counts: ['host', 'tripwireType', 'severity', 'rule', 'status', 'text', 'groupBy'],
  hosts: ['text'],
  audit: ['host', 'tripwireType', 'severity', 'rule', 'text', 'limit'],
  sql: [],
};

export const QUERY_TYPE_OPTIONS: Array<SelectableValue<QueryType>> = [
  { label: 'Alerts', value: 'alerts', description: 'Alerts, newest first' },
  { label: 'Counts', value: 'counts', description: 'Alert counts over time, grouped' },
  { label: 'Hosts', value: 'hosts', description: 'Enrolled hosts and their last heartbeat' },
  { label: 'Audit', value: 'audit', description: 'Entries of the hash-chained audit log' },
  { label: 'SQL', value: 'sql', description: 'Raw SQL against the collector store' },
];

export const TRIPWIRE_TYPE_OPTIONS: Array<SelectableValue<TripwireType>> = [
  { label: 'Any', value: '' },
  { label: 'File', value: 'FILE' },
  { label: 'Network', value: 'NETWORK' },
  { label: 'Process', value: 'PROCESS' },
  { label: 'Host (raised by the collector)', value: 'HOST' },
];

export const SEVERITY_OPTIONS: Array<SelectableValue<Severity>> = [
  { label: 'Any', value: '' },
  { label: 'Info', value: 'INFO' },
  { label: 'Warn', value: 'WARN' },
  { label: 'Critical', value: 'CRITICAL' },
];

export const STATUS_OPTIONS: Array<SelectableValue<TriageStatus>> = [
  { label: 'Any', value: '' },
  { label: 'Open', value: 'open' },
  { label: 'Acknowledged', value: 'acknowledged' },
  { label: 'Resolved', value: 'resolved' },
];

export const GROUP_BY_OPTIONS: Array<SelectableValue<GroupBy>> = [
  { label: 'Type', value: 'type' },
  { label: 'Severity', value: 'severity' },
  { label: 'Host', value: 'host' },
  { label: 'Rule', value: 'rule' },
];

/** The macros the backend expands in rawSql. */
export const SQL_MACROS: Array<{ macro: string; meaning: string }> = [
  { macro: '$__timeFilter(col)', meaning: 'col BETWEEN the dashboard time range' },
  { macro: '$__timeFrom()', meaning: 'the start of the time range' },
  { macro: '$__timeTo()', meaning: 'the end of the time range' },
  { macro: '$__interval_s', meaning: 'the panel interval in seconds' },
];

/** The backend resources that list filter values: GET hosts, GET rules. */
export type Resource = 'hosts' | 'rules';

/** A variable query: the values of one resource. */
export interface TripwireVariableQuery extends DataQuery {
  queryType: Resource;
}

/**
 * The resource a variable query names. Besides the {queryType} model, a plain string
 * ("hosts", "rules") is accepted, as Grafana stores for variables made before the
 * editor existed.
 */
export function resourceOf(query: TripwireVariableQuery | string | undefined): Resource {
  const name = typeof query === 'string' ? query.trim() : query?.queryType;
  return name === 'rules' ? 'rules' : 'hosts';
}

/** Data source settings that are not secret (jsonData). */
export interface TripwireOptions extends DataSourceJsonData {
  /** The collector's API base URL, e.g. http://127.0.0.1:8080 */
  url?: string;
  tlsSkipVerify?: boolean;
  tlsAuthWithCACert?: boolean;
}

/** Secret settings (secureJsonData): sent to the backend only, never back to the browser. */
export interface TripwireSecureOptions {
  apiToken?: string;
  tlsCACert?: string;
}
