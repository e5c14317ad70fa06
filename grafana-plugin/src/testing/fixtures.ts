// Test doubles for the Grafana services a plugin reaches through @grafana/runtime. They
// stand in for the Grafana server, which a unit test cannot start: the backend service
// answers resource calls as the Go backend does (grafana-plugin/pkg), and the template
// service interpolates variables the way Grafana's does for the cases the tests use.
import { DataSourceInstanceSettings, ScopedVars, TypedVariableModel } from '@grafana/data';
import {
  BackendSrv,
  BackendSrvRequest,
  FetchResponse,
  setBackendSrv,
  setTemplateSrv,
  TemplateSrv,
} from '@grafana/runtime';
import { Observable, of, throwError } from 'rxjs';

import { DataSource } from '../datasource';
import { TripwireOptions } from '../types';

export const UID = 'tripwire';

export function instanceSettings(): DataSourceInstanceSettings<TripwireOptions> {
  return {
    id: 1,
    uid: UID,
    type: 'tripwire-tripwire-datasource',
    name: 'Tripwire',
    access: 'proxy',
    readOnly: false,
    jsonData: { url: 'http://127.0.0.1:8080' },
    meta: {} as DataSourceInstanceSettings['meta'],
  };
}

export function newDataSource(): DataSource {
  return new DataSource(instanceSettings());
}

/**
 * Installs a backend service that answers GET /api/datasources/uid/tripwire/resources/NAME
 * with resources[NAME] and anything else with a 404. It returns the URLs requested.
 */
export function serveResources(resources: Record<string, unknown>): string[] {
  const requested: string[] = [];
  const prefix = `/api/datasources/uid/${UID}/resources/`;
  const fetch = (req: BackendSrvRequest): Observable<FetchResponse<unknown>> => {
    requested.push(req.url);
    const name = req.url.startsWith(prefix) ? req.url.slice(prefix.length) : '';
    if (req.method !== 'GET' || !(name in resources)) {
      return throwError(() => ({ status: 404, data: { message: `no resource ${req.url}` } }));
    }
    return of(response(req, resources[name]));
  };
  setBackendSrv({ fetch } as unknown as BackendSrv);
  return requested;
}

function response<T>(req: BackendSrvRequest, data: T): FetchResponse<T> {
  return {
    data,
    status: 200,
    statusText: 'OK',
    ok: true,
    headers: new Headers(),
    redirected: false,
    type: 'basic',
    url: req.url,
    config: req,
  };
}

type Format = (value: string | string[], variable: unknown, defaultFormat: unknown) => string;

/**
 * Installs a template service with these dashboard variables. As Grafana's, it replaces
 * $name and ${name}, prefers scoped variables, hands the value to a format function when
 * given one and otherwise renders several values as {a,b}.
 */
export function setVariables(variables: Record<string, string | string[]>) {
  const lookup = (name: string, scopedVars?: ScopedVars) =>
    scopedVars?.[name] ? (scopedVars[name]!.value as string | string[]) : variables[name];
  const templateSrv: TemplateSrv = {
    getVariables: () => Object.keys(variables).map((name) => ({ name }) as TypedVariableModel),
    replace: (target, scopedVars, format) =>
      (target ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (match, braced?: string, bare?: string) => {
        const value = lookup((braced ?? bare)!, scopedVars);
        if (value === undefined) {
          return match;
        }
        if (typeof format === 'function') {
          return (format as Format)(value, {}, undefined);
        }
        return Array.isArray(value) ? `{${value.join(',')}}` : value;
      }),
    containsTemplate: (target) => /\$\{?\w+/.test(target ?? ''),
    updateTimeRange: () => {},
  };
  setTemplateSrv(templateSrv);
}
