import React, { ChangeEvent, useEffect, useState } from 'react';
import { css } from '@emotion/css';
import { GrafanaTheme2, MetricFindValue, QueryEditorProps, SelectableValue } from '@grafana/data';
import { getTemplateSrv } from '@grafana/runtime';
import {
  InlineField,
  InlineFieldRow,
  InlineSwitch,
  Input,
  RadioButtonGroup,
  Select,
  TextArea,
  useStyles2,
} from '@grafana/ui';

import type { DataSource } from '../datasource';
import {
  DEFAULT_LIMIT,
  DEFAULT_SQL,
  Filter,
  FILTERS,
  GROUP_BY_OPTIONS,
  MAX_LIMIT,
  QUERY_TYPE_OPTIONS,
  QueryType,
  Resource,
  SEVERITY_OPTIONS,
  SQL_MACROS,
  STATUS_OPTIONS,
  TRIPWIRE_TYPE_OPTIONS,
  TripwireOptions,
  TripwireQuery,
} from '../types';

export type Props = QueryEditorProps<DataSource, TripwireQuery, TripwireOptions> & {
  /** Hides the query type picker and pins the type (the annotation editor pins alerts). */
  fixedQueryType?: QueryType;
};

const LABEL_WIDTH = 14;

/**
 * Edits one Tripwire target: a builder of filters for alerts, counts, hosts and audit
 * queries, or raw SQL when the query type is "sql".
 */
export function QueryEditor({ query, onChange, onRunQuery, datasource, fixedQueryType }: Props) {
  const queryType = fixedQueryType ?? query.queryType ?? 'alerts';

  const update = (patch: Partial<TripwireQuery>, run = true) => {
    onChange({ ...query, ...patch, ...(fixedQueryType && { queryType: fixedQueryType }) });
    if (run) {
      onRunQuery();
    }
  };

  return (
    <>
      {!fixedQueryType && (
        <InlineField label="Query type" labelWidth={LABEL_WIDTH}>
          <RadioButtonGroup<QueryType>
            aria-label="Query type"
            options={QUERY_TYPE_OPTIONS}
            value={queryType}
            onChange={(next) => update(switchType(query, next))}
          />
        </InlineField>
      )}
      {queryType === 'sql' ? (
        <SqlEditor query={query} update={update} />
      ) : (
        <Builder
          query={query}
          filters={FILTERS[queryType].filter((f) => !(fixedQueryType && f === 'live'))}
          datasource={datasource}
          update={update}
        />
      )}
    </>
  );
}

/** The annotation editor: the alerts builder, without the type picker or the live switch. */
export function AnnotationQueryEditor(props: QueryEditorProps<DataSource, TripwireQuery, TripwireOptions>) {
  return <QueryEditor {...props} fixedQueryType="alerts" />;
}

/** The query after switching to type next, with the fields that type needs filled in. */
export function switchType(query: TripwireQuery, next: QueryType): TripwireQuery {
  const switched: TripwireQuery = { ...query, queryType: next };
  if (next === 'sql' && !query.rawSql) {
    switched.rawSql = DEFAULT_SQL;
  }
  if (next === 'counts' && !query.groupBy) {
    switched.groupBy = 'type';
  }
  if (next !== 'alerts') {
    switched.live = false;
  }
  return switched;
}

type Update = (patch: Partial<TripwireQuery>, run?: boolean) => void;

interface BuilderProps {
  query: TripwireQuery;
  filters: Filter[];
  datasource: DataSource;
  update: Update;
}

function Builder({ query, filters, datasource, update }: BuilderProps) {
  const has = (f: Filter) => filters.includes(f);
  const hosts = useResourceOptions(datasource, 'hosts', has('host'));
  const rules = useResourceOptions(datasource, 'rules', has('rule'));

  return (
    <>
      <InlineFieldRow>
        {has('host') && (
          <InlineField label="Host" labelWidth={LABEL_WIDTH} htmlFor="tripwire-host">
            <Select
              inputId="tripwire-host"
              width={24}
              options={hosts}
              value={asOption(query.host)}
              placeholder="Any host"
              allowCustomValue
              isClearable
              onChange={(v: SelectableValue<string> | null) => update({ host: v?.value ?? '' })}
            />
          </InlineField>
        )}
        {has('rule') && (
          <InlineField label="Rule" labelWidth={LABEL_WIDTH} htmlFor="tripwire-rule">
            <Select
              inputId="tripwire-rule"
              width={24}
              options={rules}
              value={asOption(query.rule)}
              placeholder="Any rule"
              allowCustomValue
              isClearable
              onChange={(v: SelectableValue<string> | null) => update({ rule: v?.value ?? '' })}
            />
          </InlineField>
        )}
        {has('tripwireType') && (
          <InlineField label="Type" labelWidth={LABEL_WIDTH} htmlFor="tripwire-type">
            <Select
              inputId="tripwire-type"
              width={16}
              options={TRIPWIRE_TYPE_OPTIONS}
              value={query.tripwireType ?? ''}
              onChange={(v) => update({ tripwireType: v.value ?? '' })}
            />
          </InlineField>
        )}
        {has('severity') && (
          <InlineField label="Severity" labelWidth={LABEL_WIDTH} htmlFor="tripwire-severity">
            <Select
              inputId="tripwire-severity"
              width={16}
              options={SEVERITY_OPTIONS}
              value={query.severity ?? ''}
              onChange={(v) => update({ severity: v.value ?? '' })}
            />
          </InlineField>
        )}
        {has('status') && (
          <InlineField label="Status" labelWidth={LABEL_WIDTH} htmlFor="tripwire-status">
            <Select
              inputId="tripwire-status"
              width={18}
              options={STATUS_OPTIONS}
              value={query.status ?? ''}
              onChange={(v) => update({ status: v.value ?? '' })}
            />
          </InlineField>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        {has('text') && (
          <InlineField
            label="Contains"
            labelWidth={LABEL_WIDTH}
            htmlFor="tripwire-text"
            tooltip="Free text matched against path, command line, user and address"
            grow
          >
            <Input
              id="tripwire-text"
              value={query.text ?? ''}
              placeholder="e.g. /etc/shadow or curl"
              onChange={(e: ChangeEvent<HTMLInputElement>) => update({ text: e.target.value }, false)}
              onBlur={() => update({})}
            />
          </InlineField>
        )}
        {has('groupBy') && (
          <InlineField label="Group by" labelWidth={LABEL_WIDTH}>
            <RadioButtonGroup
              aria-label="Group by"
              options={GROUP_BY_OPTIONS}
              value={query.groupBy ?? 'type'}
              onChange={(groupBy) => update({ groupBy })}
            />
          </InlineField>
        )}
        {has('limit') && (
          <InlineField
            label="Limit"
            labelWidth={LABEL_WIDTH}
            htmlFor="tripwire-limit"
            tooltip={`Newest rows first: 1 to ${MAX_LIMIT}; empty means ${DEFAULT_LIMIT}`}
          >
            <Input
              id="tripwire-limit"
              type="number"
              min={1}
              max={MAX_LIMIT}
              width={10}
              value={query.limit ?? ''}
              placeholder={String(DEFAULT_LIMIT)}
              onChange={(e: ChangeEvent<HTMLInputElement>) => update({ limit: parseLimit(e.target.value) }, false)}
              onBlur={() => update({})}
            />
          </InlineField>
        )}
        {has('live') && (
          <InlineField
            label="Live"
            labelWidth={LABEL_WIDTH}
            htmlFor="tripwire-live"
            tooltip="Stream new alerts into the panel as they arrive (Grafana Live)"
          >
            <InlineSwitch
              id="tripwire-live"
              value={Boolean(query.live)}
              onChange={(e) => update({ live: e.currentTarget.checked })}
            />
          </InlineField>
        )}
      </InlineFieldRow>
    </>
  );
}

function SqlEditor({ query, update }: { query: TripwireQuery; update: Update }) {
  const styles = useStyles2(getStyles);
  return (
    <>
      <InlineField label="Raw SQL" labelWidth={LABEL_WIDTH} htmlFor="tripwire-sql" grow>
        <TextArea
          id="tripwire-sql"
          className={styles.sql}
          rows={8}
          value={query.rawSql ?? ''}
          placeholder={DEFAULT_SQL}
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) => update({ rawSql: e.target.value }, false)}
          onBlur={() => update({})}
        />
      </InlineField>
      <ul aria-label="SQL macros" className={styles.macros}>
        {SQL_MACROS.map(({ macro, meaning }) => (
          <li key={macro}>
            <code>{macro}</code> {meaning}
          </li>
        ))}
      </ul>
    </>
  );
}

/**
 * The values of a backend resource as select options, after the dashboard's variables
 * (so a panel can filter by $host). A failed load leaves only the variables: the field
 * still takes a typed value.
 */
function useResourceOptions(datasource: DataSource, resource: Resource, enabled: boolean) {
  const [values, setValues] = useState<MetricFindValue[]>([]);
  useEffect(() => {
    if (!enabled) {
      return;
    }
    let current = true;
    datasource
      .listResource(resource)
      .then((loaded) => current && setValues(loaded))
      .catch(() => current && setValues([]));
    return () => {
      current = false;
    };
  }, [datasource, resource, enabled]);
  const variables = getTemplateSrv()
    .getVariables()
    .map((v) => `$${v.name}`);
  return [...variables, ...values.map((v) => String(v.value ?? v.text))].map((value) => asOption(value)!);
}

function asOption(value?: string): SelectableValue<string> | null {
  return value ? { label: value, value } : null;
}

function parseLimit(value: string): number | undefined {
  const n = parseInt(value, 10);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

const getStyles = (theme: GrafanaTheme2) => ({
  sql: css({ fontFamily: theme.typography.fontFamilyMonospace }),
  macros: css({
    listStyle: 'none',
    margin: theme.spacing(0.5, 0, 1, LABEL_WIDTH),
    color: theme.colors.text.secondary,
    fontSize: theme.typography.bodySmall.fontSize,
  }),
});
