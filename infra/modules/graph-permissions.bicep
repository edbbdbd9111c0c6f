// Application permissions (app role assignments) for the managed identity, taken from
// permissions.json, which `python -m devtools.permissions` generates from the permissions the
// code declares (shared/permissions.py). No permission name is written here: a step that
// needs a new permission declares it, the file is regenerated, and the next deployment
// grants it.
//
// Uses the Microsoft Graph Bicep extension (bicepconfig.json). The deployer needs
// AppRoleAssignment.ReadWrite.All + Application.Read.All, i.e. an admin role such as
// Privileged Role Administrator; otherwise deploy with grantApiPermissions=false and let an
// admin grant them (README "Deploy").
extension microsoftGraphV1

@description('Object id of the managed identity\'s service principal.')
param principalId string

@description('Components (keys of permissions.json optionalGraphApplicationPermissions, e.g. step:remove_admin_roles) whose permissions are requested only when the deployment enables them.')
param optionalComponents array = []

var permissions = loadJsonContent('../permissions.json')
var graphPermissions = permissions.graphApplicationPermissions
var exchangePermissions = permissions.exchangeApplicationPermissions
// Permissions a component needs only when the policy uses it (RoleManagement.ReadWrite.
// Directory for step:remove_admin_roles): granted only for the components enabled here,
// each once, and never one the list above already grants.
var optionalLists = map(optionalComponents, component => permissions.optionalGraphApplicationPermissions[component])
var optionalPermissions = filter(union([], flatten(optionalLists)), permission => !contains(graphPermissions, permission))

// The first-party resource apps, looked up by their well-known appId in this tenant.
resource graphSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000' // Microsoft Graph
}

resource exchangeSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000002-0000-0ff1-ce00-000000000000' // Office 365 Exchange Online
}

// One assignment per permission; the app role id is found by the role's value (its name).
// A name that the resource app does not define fails the deployment (empty filter result).
resource graphAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in graphPermissions: {
    principalId: principalId
    resourceId: graphSp.id
    appRoleId: filter(graphSp.appRoles, role => role.value == permission)[0].id
  }
]

resource optionalGraphAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in optionalPermissions: {
    principalId: principalId
    resourceId: graphSp.id
    appRoleId: filter(graphSp.appRoles, role => role.value == permission)[0].id
  }
]

resource exchangeAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in exchangePermissions: {
    principalId: principalId
    resourceId: exchangeSp.id
    appRoleId: filter(exchangeSp.appRoles, role => role.value == permission)[0].id
  }
]

output graphPermissions array = graphPermissions
output optionalGraphPermissions array = optionalPermissions
output exchangePermissions array = exchangePermissions
output directoryRolesToAssign array = permissions.directoryRoles
