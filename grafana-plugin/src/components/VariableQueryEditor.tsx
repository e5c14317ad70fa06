import React from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, RadioButtonGroup } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { Resource, resourceOf, TripwireOptions, TripwireQuery, TripwireVariableQuery } from '../types';

type Props = QueryEditorProps<DataSource, TripwireQuery, TripwireOptions, TripwireVariableQuery>;

const RESOURCE_OPTIONS: Array<SelectableValue<Resource>> = [
  { label: 'Hosts', value: 'hosts', description: 'Every enrolled host' },
  { label: 'Rules', value: 'rules', description: 'Every tripwire rule' },
];

/** Picks what a dashboard variable lists: the collector's hosts or its rules. */
export function VariableQueryEditor({ query, onChange }: Props) {
  const resource = resourceOf(query);
  return (
    <InlineField label="Values" labelWidth={20} tooltip="What the variable lists, from the Tripwire collector">
      <RadioButtonGroup<Resource>
        options={RESOURCE_OPTIONS}
        value={resource}
        onChange={(queryType) => onChange({ refId: 'variable', ...asObject(query), queryType })}
      />
    </InlineField>
  );
}

// Variables saved before this editor existed hold a plain string.
function asObject(query: TripwireVariableQuery | string | undefined): Partial<TripwireVariableQuery> {
  return typeof query === 'object' && query !== null ? query : {};
}
