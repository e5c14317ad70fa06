import { CoreApp, DataQueryRequest } from '@grafana/data';
import { lastValueFrom } from 'rxjs';

import { sqlValue } from './datasource';
import { newDataSource, serveResources, setVariables } from './testing/fixtures';
import { DEFAULT_QUERY, resourceOf, TripwireQuery, TripwireVariableQuery } from './types';

describe('DataSource.getDefaultQuery', () => {
  it('is an alerts query with empty filters, the default limit and no stream', () => {
    expect(newDataSource().getDefaultQuery(CoreApp.PanelEditor)).toEqual({
      queryType: 'alerts',
      host: '',
      tripwireType: '',
      severity: '',
      rule: '',
      status: '',
      text: '',
      limit: 100,
      live: false,
    });
  });
});

describe('DataSource.applyTemplateVariables', () => {
  beforeEach(() => setVariables({ host: 'web-1', rule: 'creds', hosts: ['web-1', "o'brien"] }));

  it('interpolates host, rule and text', () => {
    const query: TripwireQuery = {
      refId: 'A',
      queryType: 'alerts',
      host: '$host',
      rule: '${rule}',
      text: 'on $host',
      severity: 'CRITICAL',
      limit: 10,
    };
    expect(newDataSource().applyTemplateVariables(query, {})).toEqual({
      ...query,
      host: 'web-1',
      rule: 'creds',
      text: 'on web-1',
    });
  });

  it('prefers scoped variables (repeated panels)', () => {
    const query: TripwireQuery = { refId: 'A', queryType: 'alerts', host: '$host' };
    const scoped = { host: { text: 'db-2', value: 'db-2' } };
    expect(newDataSource().applyTemplateVariables(query, scoped).host).toBe('db-2');
  });

  it('quotes a multi-value variable in rawSql as an SQL list and leaves the macros to the backend', () => {
    const query: TripwireQuery = {
      refId: 'A',
      queryType: 'sql',
      rawSql: "SELECT * FROM alerts WHERE $__timeFilter(ts) AND hostname IN ($hosts) AND rule_name = '$rule'",
    };
    expect(newDataSource().applyTemplateVariables(query, {}).rawSql).toBe(
      "SELECT * FROM alerts WHERE $__timeFilter(ts) AND hostname IN ('web-1','o''brien') AND rule_name = 'creds'"
    );
  });

  it('leaves empty fields empty', () => {
    const query: TripwireQuery = { refId: 'A', queryType: 'hosts', host: '', text: undefined };
    expect(newDataSource().applyTemplateVariables(query, {})).toEqual(query);
  });
});

describe('DataSource.filterQuery', () => {
  const ds = newDataSource();
  it.each<[string, TripwireQuery, boolean]>([
    ['alerts', { refId: 'A', queryType: 'alerts' }, true],
    ['sql with SQL', { refId: 'A', queryType: 'sql', rawSql: 'SELECT 1' }, true],
    ['sql without SQL', { refId: 'A', queryType: 'sql', rawSql: '' }, false],
    ['sql of blanks', { refId: 'A', queryType: 'sql', rawSql: ' \n ' }, false],
    ['hidden', { refId: 'A', queryType: 'alerts', hide: true }, false],
  ])('%s', (_, query, want) => {
    expect(ds.filterQuery(query)).toBe(want);
  });
});

describe('variables', () => {
  const hosts = [
    { text: 'web-1', value: 'web-1' },
    { text: 'db-2', value: 'db-2' },
  ];
  const rules = [{ text: 'creds', value: 'creds' }];

  it('metricFindQuery lists the hosts resource', async () => {
    const requested = serveResources({ hosts, rules });
    await expect(newDataSource().metricFindQuery({ refId: 'v', queryType: 'hosts' })).resolves.toEqual(hosts);
    expect(requested).toEqual(['/api/datasources/uid/tripwire/resources/hosts']);
  });

  it('metricFindQuery lists the rules resource, also for a legacy string query', async () => {
    serveResources({ hosts, rules });
    await expect(newDataSource().metricFindQuery('rules')).resolves.toEqual(rules);
  });

  it('takes the text as the value when the backend sends no value', async () => {
    serveResources({ hosts: [{ text: 'web-1' }], rules: null });
    const ds = newDataSource();
    await expect(ds.listResource('hosts')).resolves.toEqual([{ text: 'web-1', value: 'web-1' }]);
    await expect(ds.listResource('rules')).resolves.toEqual([]);
  });

  it('the variable support answers a variable query with the resource values', async () => {
    serveResources({ hosts, rules });
    const ds = newDataSource();
    const request = { targets: [{ refId: 'v', queryType: 'rules' }] } as DataQueryRequest<TripwireVariableQuery>;
    const variables = ds.variables as { query: (r: typeof request) => ReturnType<typeof ds.query> };
    await expect(lastValueFrom(variables.query(request))).resolves.toEqual({ data: rules });
  });

  it('fails when the resource fails', async () => {
    serveResources({});
    await expect(newDataSource().listResource('hosts')).rejects.toMatchObject({ status: 404 });
  });
});

describe('resourceOf', () => {
  it.each<[TripwireVariableQuery | string | undefined, string]>([
    [{ refId: 'v', queryType: 'hosts' }, 'hosts'],
    [{ refId: 'v', queryType: 'rules' }, 'rules'],
    ['rules', 'rules'],
    [' rules ', 'rules'],
    ['', 'hosts'],
    [undefined, 'hosts'],
  ])('%j is %s', (query, want) => {
    expect(resourceOf(query)).toBe(want);
  });
});

describe('sqlValue', () => {
  it('passes a single value through and quotes a list', () => {
    expect(sqlValue('web-1')).toBe('web-1');
    expect(sqlValue(['a', "b'c"])).toBe("'a','b''c'");
  });
});

describe('annotations', () => {
  it('run as an alerts query without a stream, whatever the stored target says', () => {
    const ds = newDataSource();
    const target: TripwireQuery = { ...DEFAULT_QUERY, refId: 'Anno', queryType: 'counts', live: true, host: 'web-1' };
    expect(ds.annotations.prepareQuery!({ enable: true, name: 'x', iconColor: 'red', target })).toEqual({
      ...target,
      queryType: 'alerts',
      live: false,
    });
  });
});
