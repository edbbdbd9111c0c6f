// The Function App on a Flex Consumption (FC1) plan, Python 3.11, Linux. Runtime and scale
// live in functionAppConfig (Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION as app settings). The package is pulled from a blob container
// with the user-assigned identity: no storage key anywhere.

param location string
param tags object
param functionAppName string
param planName string
@description('Resource id of the user-assigned managed identity.')
param identityId string
@description('URL of the blob container holding the deployment package.')
param deploymentContainerUrl string
param maximumInstanceCount int
param instanceMemoryMB int
@secure()
@description('App settings, name -> value (built in main.bicep).')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy on Flex Consumption depends on the region; queued requests survive in storage, so a zone outage delays work rather than losing it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Alert webhooks (Azure Monitor action groups, Sentinel/Logic Apps, Event Grid) call the app over its public endpoint; HTTP functions authenticate callers themselves.
  // checkov:skip=CKV_AZURE_17: The callers (Azure Monitor, Logic Apps, Event Grid) cannot present client certificates.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero and out on demand; queue triggers tolerate a cold start, and always-ready instances are a cost choice left to the deployer.
  // checkov:skip=CKV_AZURE_213: Health check is not available on Flex Consumption; failures surface through Application Insights and the poison queue.
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing passwords: deployments (azd, func, az CLI) authenticate with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
