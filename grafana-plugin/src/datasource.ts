import { AnnotationSupport, CoreApp, DataSourceInstanceSettings, MetricFindValue, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { AnnotationQueryEditor } from './components/QueryEditor';
import { DEFAULT_QUERY, Resource, resourceOf, TripwireOptions, TripwireQuery, TripwireVariableQuery } from './types';
import { TripwireVariableSupport } from './variables';

/**
 * The Tripwire data source. Queries run in the Go backend (grafana-plugin/pkg); a live
 * alerts query comes back with a Grafana Live channel on its frame, which
 * DataSourceWithBackend turns into a stream on its own.
 */
export class DataSource extends DataSourceWithBackend<TripwireQuery, TripwireOptions> {
  annotations: AnnotationSupport<TripwireQuery> = {
    getDefaultQuery: () => ({ ...DEFAULT_QUERY, queryType: 'alerts' }),
    QueryEditor: AnnotationQueryEditor,
    // Annotations are alerts at a point in time: never counts or SQL, never a stream.
    prepareQuery: (anno) => (anno.target ? { ...anno.target, queryType: 'alerts', live: false } : undefined),
  };

  constructor(instanceSettings: DataSourceInstanceSettings<TripwireOptions>) {
    super(instanceSettings);
    this.variables = new TripwireVariableSupport(this);
  }

  getDefaultQuery(_: CoreApp): Partial<TripwireQuery> {
    return DEFAULT_QUERY;
  }

  /** Interpolates dashboard variables (a repeated panel's own first) into host, rule, text and rawSql. */
  applyTemplateVariables(query: TripwireQuery, scopedVars: ScopedVars): TripwireQuery {
    const templateSrv = getTemplateSrv();
    const replace = (value?: string) => (value ? templateSrv.replace(value, scopedVars) : value);
    return {
      ...query,
      host: replace(query.host),
      rule: replace(query.rule),
      text: replace(query.text),
      rawSql: query.rawSql ? templateSrv.replace(query.rawSql, scopedVars, sqlValue) : query.rawSql,
    };
  }

  /** Skips hidden queries and SQL queries with no SQL yet. */
  filterQuery(query: TripwireQuery): boolean {
    if (query.hide) {
      return false;
    }
    return query.queryType !== 'sql' || Boolean(query.rawSql?.trim());
  }

  /** The values of one backend resource (hosts or rules), for variables and editor options. */
  async listResource(resource: Resource): Promise<MetricFindValue[]> {
    const values = await this.getResource<MetricFindValue[] | null>(resource);
    return (values ?? []).map(({ text, value }) => ({ text, value: value ?? text }));
  }

  async metricFindQuery(query: TripwireVariableQuery | string): Promise<MetricFindValue[]> {
    return this.listResource(resourceOf(query));
  }
}

/**
 * Formats a variable's value for rawSql: a single value as it is (so it can stand in an
 * identifier or inside quotes the author wrote), several values as a list of quoted SQL
 * strings, for IN (...).
 */
export function sqlValue(value: string | string[]): string {
  if (typeof value === 'string') {
    return value;
  }
  return value.map((v) => `'${String(v).replace(/'/g, "''")}'`).join(',');
}
