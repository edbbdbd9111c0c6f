// Compromised-account responder: everything the Functions app needs in one resource group.
//
//   azd up                                   (reads main.parameters.json)
//   az deployment group create -g <rg> -f infra/main.bicep -p responderTenantId=<tenant>
//
// No keys or connection strings: storage, Application Insights and (optionally) Event Hubs
// are reached with the user-assigned managed identity. The same identity calls Graph and
// Exchange Online; its application permissions come from permissions.json (generated from
// the code by `python -m devtools.permissions`). Directory roles are assigned by an admin
// (see README "Deploy").
//
// multiTenant=true (docs/deploy.md "Protect several tenants from one deployment"): the code
// calls Graph and Exchange as a multi-tenant app registration instead, whose only credential
// is that same identity (a federated identity credential: no secret). Each customer tenant
// consents to the app; nothing per customer tenant is in this template.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------- parameters

@minLength(1)
@maxLength(40)
@description('Environment name (azd: AZURE_ENV_NAME); used in resource names and tags.')
param environmentName string

@description('Azure region for every resource. Must be a region that offers Flex Consumption.')
param location string = resourceGroup().location

@description('Entra tenant the responder acts on (RESPONDER_TENANT_ID). Empty: the tenant of this deployment.')
param responderTenantId string = ''

@description('Microsoft Graph host, without version (GRAPH_BASE_URL).')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Exchange Online admin REST host (EXCHANGE_BASE_URL).')
param exchangeBaseUrl string = 'https://outlook.office365.com'

@minLength(3)
@maxLength(56) // leaves room for the "-poison" suffix within the 63-character queue name limit
@description('Queue of remediation requests (REMEDIATION_QUEUE).')
param remediationQueue string = 'remediation-requests'

@description('Path of the policy file inside the deployed package (RESPONDER_POLICY).')
param responderPolicy string = 'policy.json'

@allowed([
  'true'
  'false'
])
@description('RESPONDER_DRY_RUN. Keep "true" for a first deployment: runs plan and report but change nothing. Switch to "false" after checking the dry-run reports.')
param responderDryRun string = 'true'

@description('Give the managed identity the Graph / Exchange application permissions listed in permissions.json (needs a deployer allowed to grant app roles: Privileged Role Administrator or Global Administrator).')
param grantApiPermissions bool = true

@description('Grant RoleManagement.ReadWrite.Directory for the remove_admin_roles step (very privileged: it can assign any directory role). Leave false unless a playbook in the policy uses remove_admin_roles; preflight reports it missing when one does.')
param enableRoleRemoval bool = false

@description('Protect several tenants from one deployment: create a multi-tenant app registration (Microsoft Graph extension) whose federated credential is the managed identity, and call Graph and Exchange as that app (RESPONDER_CREDENTIAL=federated-app). false: today\'s single-tenant deployment, unchanged.')
param multiTenant bool = false

@description('multiTenant only: the app registration\'s display name, which customer administrators see on the consent prompt. Empty: "Compromised-account responder (<environmentName>)".')
param appDisplayName string = ''

@description('Object id of the person or group operating the responder (azd: AZURE_PRINCIPAL_ID). Gets queue send and read access to run records and evidence. Empty: none.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

@description('Optional: create an Event Hub that the Entra diagnostic setting (entra-diagnostics.bicep, tenant scope) streams UserRiskEvents and RiskyUsers to.')
param enableEventHub bool = false

@description('Optional: create an Event Grid topic with a subscription to the Event Grid function. Enable only after the code is deployed (Event Grid checks that the function exists).')
param enableEventGrid bool = false

@description('Name of the Event Grid-triggered function that receives alerts (used when enableEventGrid).')
param eventGridFunctionName string = 'risk_alert_eventgrid'

@minValue(1)
@maxValue(1000)
@description('Flex Consumption: the most instances the app scales out to.')
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption: memory per instance, in MB.')
param instanceMemoryMB int = 2048

@minValue(30)
@maxValue(730)
@description('Log Analytics retention, in days.')
param logRetentionInDays int = 30

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
@description('Storage replication. LRS exists in every region; prefer ZRS/GZRS where the region has it (evidence and run records live here).')
param storageSkuName string = 'Standard_LRS'

@secure()
@description('More app settings (name -> value) for features added later, e.g. webhook secrets. Secure so that values stay out of the deployment history.')
param extraAppSettings object = {}

// --------------------------------------------------------------------------------- names

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'compromised-account-responder'
}
var functionAppName = 'func-${take(environmentName, 30)}-${token}'
// 2 + 9 + 13 characters: within the 24-character limit, lowercase letters and digits only.
var storageAccountName = 'st${take(replace(replace(toLower(environmentName), '-', ''), '_', ''), 9)}${token}'
var deploymentContainerName = 'app-package-${take(token, 12)}'
var tenantId = empty(responderTenantId) ? tenant().tenantId : responderTenantId

// Contract names of the app (shared/settings.py defaults).
var journalTable = 'responderruns'
var evidenceContainer = 'responder-evidence'
var tenantsTable = 'respondertenants'

// ------------------------------------------------------------------------------ identity

// One user-assigned identity for the host (storage, App Insights) and the code (Graph,
// Exchange). User-assigned, so Graph permissions and directory roles survive a rebuilt app.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${take(environmentName, 40)}-${token}'
  location: location
  tags: tags
}

// ----------------------------------------------------------------------------- resources

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    namePrefix: '${take(environmentName, 40)}-${token}'
    retentionInDays: logRetentionInDays
    identityPrincipalId: identity.properties.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    storageAccountName: storageAccountName
    skuName: storageSkuName
    remediationQueue: remediationQueue
    appQueues: [
      '${remediationQueue}-cleanup'
      '${remediationQueue}-overflow'
      featureAppSettings.RESPONDER_INTAKE_QUEUE
    ]
    journalTable: journalTable
    evidenceContainer: evidenceContainer
    multiTenant: multiTenant
    tenantsTable: tenantsTable
    deploymentContainerName: deploymentContainerName
    identityPrincipalId: identity.properties.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module eventHub 'modules/event-hub.bicep' = if (enableEventHub) {
  name: 'event-hub'
  params: {
    location: location
    tags: tags
    namespaceName: 'evhns-${take(environmentName, 30)}-${token}'
    identityPrincipalId: identity.properties.principalId
  }
}

// The app settings: every name of shared/settings.py APP_SETTINGS, except
// AzureWebJobsStorage (identity-based AzureWebJobsStorage__* instead) and
// RESPONDER_STATIC_TOKEN (local emulator only, never set in Azure).
var appSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.accountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  RESPONDER_TENANT_ID: tenantId
  GRAPH_BASE_URL: graphBaseUrl
  EXCHANGE_BASE_URL: exchangeBaseUrl
  RESPONDER_CREDENTIAL: multiTenant ? 'federated-app' : 'managed-identity'
  AZURE_CLIENT_ID: identity.properties.clientId
  REMEDIATION_QUEUE: remediationQueue
  RESPONDER_CLEANUP_QUEUE: '${remediationQueue}-cleanup'
  RESPONDER_OVERFLOW_QUEUE: '${remediationQueue}-overflow'
  RESPONDER_POLICY: responderPolicy
  RESPONDER_DRY_RUN: responderDryRun
  RESPONDER_JOURNAL_TABLE: journalTable
  RESPONDER_EVIDENCE_CONTAINER: evidenceContainer
}

// Timer schedules (6-field NCRONTAB) and feature settings the trigger bindings resolve
// (`%NAME%`): a binding whose setting is missing stops the host from loading the function.
// Defaults equal shared/settings.py EXTRA_SETTINGS (a test compares). Secrets (webhook shared
// secret, Graph clientState, approval and notification HMAC secrets) go in the secure
// `extraAppSettings` parameter, or better as Key Vault references.
var featureAppSettings = {
  RESPONDER_POLL_SCHEDULE: '0 */5 * * * *'
  RESPONDER_INTAKE_QUEUE: 'responder-intake'
  RESPONDER_SWEEP_AUDIT_SCHEDULE: '0 15 2 * * *'
  RESPONDER_SWEEP_RISKY_USERS_SCHEDULE: '0 */30 * * * *'
  RESPONDER_SWEEP_RESTRICTED_SENDERS_SCHEDULE: '0 5,35 * * * *'
  RESPONDER_SWEEP_STALLED_RUNS_SCHEDULE: '0 */15 * * * *'
  RESPONDER_SWEEP_FORWARDING_SCHEDULE: '0 20 * * * *'
  RESPONDER_SWEEP_SECURE_SCORE_SCHEDULE: '0 0 7 * * *'
  RESPONDER_SWEEP_REINFECTION_SCHEDULE: '0 40 * * * *'
  RESPONDER_APPROVALS_ESCALATION_SCHEDULE: '0 */5 * * * *'
  RESPONDER_PREFLIGHT_SCHEDULE: '0 30 6 * * *'
  // The Event Hub trigger has no connection unless the Event Hub module is deployed.
  'AzureWebJobs.risk_alert_eventhub.Disabled': enableEventHub ? 'false' : 'true'
}

// Identity-based Event Hub trigger connection "RESPONDER_EVENTHUB" (only with enableEventHub).
var eventHubAppSettings = enableEventHub ? {
  RESPONDER_EVENTHUB__fullyQualifiedNamespace: eventHub.outputs.fullyQualifiedNamespace
  RESPONDER_EVENTHUB__credential: 'managedidentity'
  RESPONDER_EVENTHUB__clientId: identity.properties.clientId
  RESPONDER_EVENTHUB_NAME: eventHub.outputs.eventHubName
  RESPONDER_EVENTHUB_CONSUMER_GROUP: eventHub.outputs.consumerGroupName
} : {}

// multiTenant: the app registration the code acts as in every tenant (its client id), and the
// tenant registry table. AZURE_CLIENT_ID stays the managed identity: it signs the exchange.
var multiTenantAppSettings = multiTenant ? {
  RESPONDER_APP_CLIENT_ID: responderApp.outputs.appId
  RESPONDER_TENANTS_TABLE: tenantsTable
} : {}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    location: location
    tags: tags
    functionAppName: functionAppName
    planName: 'plan-${take(environmentName, 30)}-${token}'
    identityId: identity.id
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: union(extraAppSettings, featureAppSettings, eventHubAppSettings, multiTenantAppSettings, appSettings)
  }
}

module eventGrid 'modules/event-grid.bicep' = if (enableEventGrid) {
  name: 'event-grid'
  params: {
    location: location
    tags: tags
    topicName: 'evgt-${take(environmentName, 30)}-${token}'
    functionAppId: functionApp.outputs.id
    functionName: eventGridFunctionName
  }
}

// Application permissions on Microsoft Graph and Office 365 Exchange Online, from the code.
// Single-tenant: to the managed identity. multiTenant: to the app registration's service
// principal in this tenant instead (appPermissions below); the identity then needs none.
module graphPermissions 'modules/graph-permissions.bicep' = if (grantApiPermissions && !multiTenant) {
  name: 'graph-permissions'
  params: {
    principalId: identity.properties.principalId
    // permissions.json optionalGraphApplicationPermissions: granted only when enabled
    optionalComponents: enableRoleRemoval ? ['step:remove_admin_roles'] : []
  }
}

// multiTenant: the app registration and its federated credential (the managed identity).
module responderApp 'modules/responder-app.bicep' = if (multiTenant) {
  name: 'responder-app'
  params: {
    uniqueName: 'responder-${take(environmentName, 40)}-${token}'
    displayName: empty(appDisplayName) ? 'Compromised-account responder (${environmentName})' : appDisplayName
    identityPrincipalId: identity.properties.principalId
    optionalComponents: enableRoleRemoval ? ['step:remove_admin_roles'] : []
  }
}

// multiTenant: this tenant's consent, given by the deployment (customer tenants use the
// admin-consent link instead).
module appPermissions 'modules/graph-permissions.bicep' = if (grantApiPermissions && multiTenant) {
  name: 'app-permissions'
  params: {
    principalId: multiTenant ? responderApp.outputs.servicePrincipalId : ''
    optionalComponents: enableRoleRemoval ? ['step:remove_admin_roles'] : []
  }
}

// -------------------------------------------------------------------------------- outputs

output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.accountName
output RESPONDER_TENANT_ID string = tenantId
output RESPONDER_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output RESPONDER_IDENTITY_CLIENT_ID string = identity.properties.clientId
output REMEDIATION_QUEUE string = remediationQueue
output RESPONDER_DRY_RUN string = responderDryRun
output EVENT_HUB_AUTHORIZATION_RULE_ID string = enableEventHub ? eventHub.outputs.diagnosticsAuthorizationRuleId : ''
output EVENT_HUB_NAME string = enableEventHub ? eventHub.outputs.eventHubName : ''
output RESPONDER_APP_CLIENT_ID string = multiTenant ? responderApp.outputs.appId : ''
output RESPONDER_APP_SERVICE_PRINCIPAL_ID string = multiTenant ? responderApp.outputs.servicePrincipalId : ''
output EVENT_GRID_TOPIC_ENDPOINT string = enableEventGrid ? eventGrid.outputs.topicEndpoint : ''
