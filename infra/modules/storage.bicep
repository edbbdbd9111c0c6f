// The storage account of the Functions host and of the app: queues of remediation requests
// (and their poison queues), the run journal table, the evidence container, and the
// deployment container of the Flex Consumption package. Shared keys are disabled: every
// client (host, app, operator) uses Entra ID through RBAC. In multi-tenant mode also the
// tenant registry table (each other tenant's journal table and evidence container are made
// by the app itself, which holds the data roles on the whole account).

param location string
param tags object
param storageAccountName string
@description('Replication. LRS is available in every Flex Consumption region; choose ZRS or GZRS where the region offers it.')
param skuName string = 'Standard_LRS'
param remediationQueue string
param journalTable string
param evidenceContainer string
@description('Multi-tenant mode: create the tenant registry table and let the operator write it.')
param multiTenant bool = false
@description('Name of the tenant registry table (RESPONDER_TENANTS_TABLE).')
param tenantsTable string = 'respondertenants'
param deploymentContainerName string
@description('Principal (object) id of the app\'s managed identity.')
param identityPrincipalId string
@description('Principal (object) id of the operator; empty for none.')
param operatorPrincipalId string = ''
param operatorPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  queueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  tableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
}

// What the Functions host and the app need, and no more:
// blobs (host leases, deployment package, evidence), queues (triggers, poison queues, the
// app's own enqueueing), tables (run journal).
var identityRoles = [
  roles.blobDataOwner
  roles.queueDataContributor
  roles.tableDataContributor
]

@description('The other queues the app\'s triggers read (the clean-up lane, the overflow lane of fairness between tenants, the intake worker); each gets its poison queue.')
param appQueues array = [
  'remediation-requests-cleanup'
  'remediation-requests-overflow'
  'responder-intake'
]

// The operator sends test requests and reads run records and evidence (dry-run reports).
var operatorRoles = [
  roles.queueDataMessageSender
  roles.tableDataReader
  roles.blobDataReader
]

// The configured queue, its poison queue, and the default poison queue (union() removes the
// duplicate when the default name is used).
var appPoisonQueues = [for q in appQueues: '${q}-poison']
var queueNames = union([
  remediationQueue
  '${remediationQueue}-poison'
], appQueues, appPoisonQueues, [
  'remediation-requests-poison'
])

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its storage over the public endpoint; every request is Entra-authenticated (shared keys off). Put app and storage in a VNet to close it (README).
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: no private endpoint in this template; access is Entra ID + RBAC only.
  // checkov:skip=CKV_AZURE_206: Replication is the skuName parameter; its default LRS exists in every region, deployers choose ZRS/GZRS where available.
  // checkov:skip=CKV_AZURE_43: The name is computed (take('st...', 24), lowercase letters and digits), which checkov cannot evaluate.
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource evidence 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: evidenceContainer
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource journal 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: journalTable
}

// The tenant registry (`python -m shared.cli tenant add|remove` writes it with the
// operator's own login). Only in multi-tenant mode: a missing table is an empty registry.
resource tenants 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = if (multiTenant) {
  parent: tableService
  name: tenantsTable
}

resource identityAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in identityRoles: {
    name: guid(account.id, identityPrincipalId, roleId)
    scope: account
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource operatorAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in (empty(operatorPrincipalId) ? [] : operatorRoles): {
    name: guid(account.id, operatorPrincipalId, roleId)
    scope: account
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: operatorPrincipalId
      principalType: operatorPrincipalType
    }
  }
]

// The operator keeps read-only access to run records, and may write the tenant registry
// only: Storage Table Data Contributor scoped to that one table.
// https://learn.microsoft.com/azure/storage/tables/assign-azure-role-data-access
resource operatorTenantsAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (multiTenant && !empty(operatorPrincipalId)) {
  name: guid(account.id, tenantsTable, operatorPrincipalId, roles.tableDataContributor)
  scope: tenants
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output accountName string = account.name
output accountId string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueNames array = queueNames
