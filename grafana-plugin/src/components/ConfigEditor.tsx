import React, { ChangeEvent, FormEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { FieldSet, InlineField, InlineSwitch, Input, SecretInput, SecretTextArea } from '@grafana/ui';

import { TripwireOptions, TripwireSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<TripwireOptions, TripwireSecureOptions>;
type Secret = keyof TripwireSecureOptions;

const LABEL_WIDTH = 24;

/**
 * Settings of one Tripwire data source: the collector's API URL and TLS options in
 * jsonData, the API token and CA certificate in secureJsonData only (Grafana encrypts
 * those and never sends them back to the browser, only whether they are set).
 */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields, secureJsonData } = options;

  const setJsonData = (patch: Partial<TripwireOptions>) =>
    onOptionsChange({ ...options, jsonData: { ...jsonData, ...patch } });

  const setSecret = (key: Secret) => (event: FormEvent<HTMLInputElement | HTMLTextAreaElement>) =>
    onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, [key]: event.currentTarget.value } });

  const resetSecret = (key: Secret) => () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, [key]: false },
      secureJsonData: { ...secureJsonData, [key]: '' },
    });

  const urlError = validateUrl(jsonData.url);

  return (
    <>
      <FieldSet label="Collector">
        <InlineField
          label="URL"
          labelWidth={LABEL_WIDTH}
          htmlFor="tripwire-url"
          tooltip="Base URL of the collector's query API, e.g. http://127.0.0.1:8080"
          invalid={Boolean(urlError)}
          error={urlError}
          required
        >
          <Input
            id="tripwire-url"
            width={40}
            value={jsonData.url ?? ''}
            placeholder="http://127.0.0.1:8080"
            onChange={(e: ChangeEvent<HTMLInputElement>) => setJsonData({ url: e.target.value })}
          />
        </InlineField>
        <InlineField
          label="API token"
          labelWidth={LABEL_WIDTH}
          htmlFor="tripwire-api-token"
          tooltip="A token from the collector's api.tokens, sent as Authorization: Bearer"
          required
        >
          <SecretInput
            id="tripwire-api-token"
            width={40}
            isConfigured={Boolean(secureJsonFields?.apiToken)}
            value={secureJsonData?.apiToken ?? ''}
            placeholder="API token"
            onChange={setSecret('apiToken')}
            onReset={resetSecret('apiToken')}
          />
        </InlineField>
      </FieldSet>
      <FieldSet label="TLS">
        <InlineField
          label="Skip TLS verify"
          labelWidth={LABEL_WIDTH}
          htmlFor="tripwire-tls-skip-verify"
          tooltip="Accept any server certificate. For testing only: it lets anyone on the path read the token."
        >
          <InlineSwitch
            id="tripwire-tls-skip-verify"
            value={Boolean(jsonData.tlsSkipVerify)}
            onChange={(e) => setJsonData({ tlsSkipVerify: e.currentTarget.checked })}
          />
        </InlineField>
        <InlineField
          label="With CA certificate"
          labelWidth={LABEL_WIDTH}
          htmlFor="tripwire-tls-with-ca"
          tooltip="Verify the collector's certificate against this CA instead of the system roots"
        >
          <InlineSwitch
            id="tripwire-tls-with-ca"
            value={Boolean(jsonData.tlsAuthWithCACert)}
            onChange={(e) => setJsonData({ tlsAuthWithCACert: e.currentTarget.checked })}
          />
        </InlineField>
        {jsonData.tlsAuthWithCACert && (
          <InlineField label="CA certificate" labelWidth={LABEL_WIDTH} htmlFor="tripwire-tls-ca-cert">
            <SecretTextArea
              id="tripwire-tls-ca-cert"
              cols={64}
              rows={6}
              isConfigured={Boolean(secureJsonFields?.tlsCACert)}
              value={secureJsonData?.tlsCACert ?? ''}
              placeholder="-----BEGIN CERTIFICATE-----"
              onChange={setSecret('tlsCACert')}
              onReset={resetSecret('tlsCACert')}
            />
          </InlineField>
        )}
      </FieldSet>
    </>
  );
}

/** Why url is not a usable collector URL, or undefined if it is (or is not typed yet). */
export function validateUrl(url?: string): string | undefined {
  if (!url) {
    return undefined;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `"${url}" is not a URL; expected e.g. http://127.0.0.1:8080`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return `scheme "${parsed.protocol.replace(/:$/, '')}" is not http or https`;
  }
  return undefined;
}
