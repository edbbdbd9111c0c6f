// Multi-tenant mode only (main.bicep multiTenant=true): the app registration that one
// deployment uses in every tenant it protects. It has no secret and no certificate: its only
// credential is a federated identity credential that trusts the Function App's user-assigned
// managed identity, so the code exchanges a managed identity token (audience
// api://AzureADTokenExchange) for this app's token in any tenant that consented to it.
//   https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
//
// requiredResourceAccess lists exactly the application permissions of permissions.json (the
// ones the code declares, plus the optional ones main.bicep enables): it is what a customer
// tenant's administrator consents to with the admin-consent link
// (`python -m shared.cli tenant add` prints it). Nothing per customer tenant is declared here.
//
// Deployer: Application Developer, Application Administrator or Cloud Application
// Administrator (creates the app, its federated credential and its service principal in this
// tenant). Uses the Microsoft Graph Bicep extension (bicepconfig.json).
extension microsoftGraphV1

@description('Client-provided unique key of the app registration (Microsoft.Graph/applications uniqueName).')
param uniqueName string

@description('Display name: what a customer administrator sees on the consent prompt and under Enterprise applications.')
param displayName string

@description('Principal (object) id of the user-assigned managed identity that is the app\'s credential (the federated credential subject).')
param identityPrincipalId string

@description('Components (keys of permissions.json optionalGraphApplicationPermissions) whose permissions are requested only when the deployment enables them.')
param optionalComponents array = []

var permissions = loadJsonContent('../permissions.json')
var graphPermissions = permissions.graphApplicationPermissions
var exchangePermissions = permissions.exchangeApplicationPermissions
var optionalLists = map(optionalComponents, component => permissions.optionalGraphApplicationPermissions[component])
var optionalPermissions = filter(union([], flatten(optionalLists)), permission => !contains(graphPermissions, permission))
var requestedGraphPermissions = concat(graphPermissions, optionalPermissions)

// Managed identity tokens of this tenant carry iss https://login.microsoftonline.com/{tenant}/v2.0
// and sub = the identity's principal (object) id; the credential must name both exactly.
var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

// The first-party resource apps, looked up by their well-known appId in this tenant: their
// app roles give the ids that requiredResourceAccess needs.
resource graphSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000' // Microsoft Graph
}

resource exchangeSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000002-0000-0ff1-ce00-000000000000' // Office 365 Exchange Online
}

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  // Multi-tenant: other organisations' administrators can consent to it.
  // https://learn.microsoft.com/graph/api/resources/application (signInAudience values)
  signInAudience: 'AzureADMultipleOrgs'
  // Each app role whose value (the permission's name) is requested: one expression per
  // resource, no loop. A name the resource does not define would be left out here, but
  // graph-permissions.bicep (the home tenant's grant) fails the deployment on it, and
  // `shared.cli preflight --tenant <id>` reports any permission a tenant's token lacks.
  // type Role = an application permission (app role), not a delegated scope.
  requiredResourceAccess: [
    {
      resourceAppId: graphSp.appId
      resourceAccess: map(filter(graphSp.appRoles, role => contains(requestedGraphPermissions, role.value)), role => { id: role.id, type: 'Role' })
    }
    {
      resourceAppId: exchangeSp.appId
      resourceAccess: map(filter(exchangeSp.appRoles, role => contains(exchangePermissions, role.value)), role => { id: role.id, type: 'Role' })
    }
  ]

  // At most 20 federated credentials per app (one is used here).
  // https://learn.microsoft.com/entra/workload-id/workload-identity-federation-considerations
  resource managedIdentityCredential 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/function-app-managed-identity'
    description: 'The Function App\'s user-assigned managed identity is this app\'s only credential.'
    audiences: [
      'api://AzureADTokenExchange'
    ]
    issuer: issuer
    subject: identityPrincipalId
  }
}

// The app's service principal in this (its home) tenant. main.bicep grants it the app roles
// here when grantApiPermissions is on, so the home tenant needs no consent link.
resource appSp 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

output appId string = app.appId
output servicePrincipalId string = appSp.id
output requestedGraphPermissions array = requestedGraphPermissions
output requestedExchangePermissions array = exchangePermissions
output directoryRolesToAssign array = permissions.directoryRoles
