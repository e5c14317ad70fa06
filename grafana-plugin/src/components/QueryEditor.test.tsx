import React, { useState } from 'react';
import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

// No pause between keystrokes: these tests are about the model, not timing.
const user = userEvent.setup({ delay: null });

import { newDataSource, serveResources, setVariables } from '../testing/fixtures';
import { DEFAULT_QUERY, DEFAULT_SQL, TripwireQuery } from '../types';
import { AnnotationQueryEditor, QueryEditor } from './QueryEditor';

const HOSTS = [
  { text: 'web-1', value: 'web-1' },
  { text: 'db-2', value: 'db-2' },
];
const RULES = [{ text: 'creds', value: 'creds' }];

/** Renders the editor as a panel does: onChange feeds the new query back in. */
function renderEditor(initial: TripwireQuery, Editor = QueryEditor) {
  const changes: TripwireQuery[] = [];
  const runs = { count: 0 };
  const datasource = newDataSource();
  function Panel() {
    const [query, setQuery] = useState(initial);
    return (
      <Editor
        datasource={datasource}
        query={query}
        onChange={(next) => {
          changes.push(next);
          setQuery(next);
        }}
        onRunQuery={() => runs.count++}
      />
    );
  }
  render(<Panel />);
  return { last: () => changes[changes.length - 1], changes, runs };
}

async function choose(label: RegExp | string, option: string) {
  await user.click(screen.getByLabelText(label));
  await user.click(await screen.findByText(option, { selector: '[role="option"] *, [role="option"]' }));
}

const alerts: TripwireQuery = { ...DEFAULT_QUERY, refId: 'A' };

describe('QueryEditor', () => {
  let requested: string[];
  beforeEach(() => {
    requested = serveResources({ hosts: HOSTS, rules: RULES });
    setVariables({ host: 'web-1' });
  });

  it('builds an alerts query by default, with the hosts and rules from the backend', async () => {
    renderEditor({ refId: 'A' });
    expect(screen.getByRole('radio', { name: 'Alerts' })).toBeChecked();
    for (const label of ['Host', 'Rule', 'Type', 'Severity', 'Status', 'Contains', 'Limit', 'Live']) {
      expect(screen.getByLabelText(label)).toBeInTheDocument();
    }
    expect(screen.queryByLabelText('Group by')).not.toBeInTheDocument();
    await waitFor(() =>
      expect(requested).toEqual(
        expect.arrayContaining([
          '/api/datasources/uid/tripwire/resources/hosts',
          '/api/datasources/uid/tripwire/resources/rules',
        ])
      )
    );
    await user.click(screen.getByLabelText('Host'));
    for (const option of ['$host', 'web-1', 'db-2']) {
      expect(await screen.findByText(option)).toBeInTheDocument();
    }
  });

  it('switching to counts groups by type, drops the stream and runs the query', async () => {
    const { last, runs } = renderEditor({ ...alerts, live: true });
    await user.click(screen.getByRole('radio', { name: 'Counts' }));
    expect(last()).toEqual({ ...alerts, queryType: 'counts', groupBy: 'type', live: false });
    expect(runs.count).toBe(1);
    expect(screen.queryByLabelText('Live')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Limit')).not.toBeInTheDocument();

    await user.click(screen.getByRole('radio', { name: 'Host' }));
    expect(last().groupBy).toBe('host');
    expect(runs.count).toBe(2);
  });

  it('sets the filters from the selects', async () => {
    const { last, runs } = renderEditor(alerts);
    await choose('Severity', 'Critical');
    expect(last()).toEqual({ ...alerts, severity: 'CRITICAL' });
    await choose('Type', 'Network');
    expect(last().tripwireType).toBe('NETWORK');
    await choose('Status', 'Acknowledged');
    expect(last().status).toBe('acknowledged');
    await choose('Host', 'db-2');
    expect(last().host).toBe('db-2');
    await choose('Rule', 'creds');
    expect(last().rule).toBe('creds');
    expect(last()).toEqual({
      ...alerts,
      severity: 'CRITICAL',
      tripwireType: 'NETWORK',
      status: 'acknowledged',
      host: 'db-2',
      rule: 'creds',
    });
    expect(runs.count).toBe(5);
  });

  it('takes a typed host that the backend does not list, such as a variable', async () => {
    const { last } = renderEditor(alerts);
    await user.type(screen.getByLabelText('Host'), '$region{enter}');
    expect(last().host).toBe('$region');
  });

  it('runs free text and limit on blur, not on every key', async () => {
    const { last, runs } = renderEditor(alerts);
    await user.type(screen.getByLabelText('Contains'), 'shadow');
    expect(last().text).toBe('shadow');
    expect(runs.count).toBe(0);
    await user.clear(screen.getByLabelText('Limit'));
    expect(last().limit).toBeUndefined();
    expect(screen.getByLabelText('Limit')).toHaveAttribute('placeholder', '100');
    expect(runs.count).toBe(1);
    await user.type(screen.getByLabelText('Limit'), '25');
    await user.tab();
    expect(last()).toEqual({ ...alerts, text: 'shadow', limit: 25 });
    expect(runs.count).toBe(2);
  });

  it('the live switch streams alerts', async () => {
    const { last, runs } = renderEditor(alerts);
    await user.click(screen.getByLabelText('Live'));
    expect(last()).toEqual({ ...alerts, live: true });
    expect(runs.count).toBe(1);
    await user.click(screen.getByLabelText('Live'));
    expect(last().live).toBe(false);
  });

  it('SQL mode shows the SQL field and the macros instead of the builder', async () => {
    const { last } = renderEditor(alerts);
    await user.click(screen.getByRole('radio', { name: 'SQL' }));
    expect(last()).toEqual({ ...alerts, queryType: 'sql', rawSql: DEFAULT_SQL });

    const sql = screen.getByLabelText('Raw SQL');
    expect(sql).toHaveValue(DEFAULT_SQL);
    expect(screen.queryByLabelText('Host')).not.toBeInTheDocument();
    const macros = within(screen.getByRole('list', { name: 'SQL macros' }));
    for (const macro of ['$__timeFilter(col)', '$__timeFrom()', '$__timeTo()', '$__interval_s']) {
      expect(macros.getByText(macro)).toBeInTheDocument();
    }

    await user.clear(sql);
    await user.type(sql, 'SELECT count(*) FROM alerts');
    expect(last().rawSql).toBe('SELECT count(*) FROM alerts');
  });

  it('keeps SQL already written when switching back to SQL', async () => {
    const { last } = renderEditor({ ...alerts, rawSql: 'SELECT 1' });
    await user.click(screen.getByRole('radio', { name: 'SQL' }));
    expect(last().rawSql).toBe('SELECT 1');
  });

  it('the hosts query takes only free text', () => {
    renderEditor({ ...alerts, queryType: 'hosts' });
    expect(screen.getByLabelText('Contains')).toBeInTheDocument();
    for (const label of ['Host', 'Rule', 'Severity', 'Live', 'Limit']) {
      expect(screen.queryByLabelText(label)).not.toBeInTheDocument();
    }
  });
});

describe('AnnotationQueryEditor', () => {
  beforeEach(() => {
    serveResources({ hosts: HOSTS, rules: RULES });
    setVariables({});
  });

  it('edits alerts filters without a query type or a live switch', async () => {
    const { last } = renderEditor({ ...alerts, queryType: 'sql' }, AnnotationQueryEditor);
    expect(screen.queryByRole('radio', { name: 'SQL' })).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Live')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Raw SQL')).not.toBeInTheDocument();
    await choose('Severity', 'Warn');
    expect(last()).toEqual({ ...alerts, queryType: 'alerts', severity: 'WARN' });
  });
});
