"""Every preset, resolved for every registered SAM-family model, is the recipe trtq resolved
before model adapters existed: the same rules in the same order, hence the same `sha256()`
(calibration ids and cached quant states depend on it), on both export targets.

EXPECTED was produced with the code on main at d2db4b8, before adapters, where a preset did not
depend on the model:

    {name: (get_recipe(name).sha256(), get_recipe(name).for_target("onnxruntime").sha256())}

for every name get_recipe accepted: fp16, and w{N}a{N} with N in 2..8, plain and with each
variant (ptq4sam, big, flip, center, agq, ptq4vit, ptq4vit-deploy, hessian, twin).
"""

from __future__ import annotations

import pytest

from trtq.models import adapter_for, get_spec, model_names
from trtq.recipes import get_recipe, recipe_from_dict, variant_names

EXPECTED = {
    "fp16": ("91aeee497cca93355d81ad75c842e93597e42ef5bd7ce51496af4f3bd4c648c0",
             "501d136752d9e231abf8896529fe40e3dbe0d260fb17f646536e5407a36ab715"),
    "w2a2": ("aacc8803e5184458a7daecd18498a8a58d5c4fd82e9aa4ff11debc9ad7a08a6f",
             "3eedf1301e36144b6f21e229d99858b1537c43814bcfc0013eb614164c89435d"),
    "w2a2-ptq4sam": ("c79b2c3589f82b39ab1a8c2519cdaeacb99099a1b020dbefaebe10fefab1c61c",
                     "e4bb793da11bfac906cc578b4f8cffd3db06847b15c1bb0ec6814fc70e132aad"),
    "w2a2-big": ("0829191c6c36bbcfe9da9202fe0a9a108e11531cb54ab845aaa0b73056de2c70",
                 "0fc26bc31b2f401b62fb15ab63e028508d68b308c9e981a875b3c10fc62be526"),
    "w2a2-flip": ("baf4aaed5610cb664ac7c42081d6866a07f297c3470fa25250c19570a2cd3f45",
                  "d3426db9f2e427bfdbb8e006e7ac8153f6c5ca772dd3d1367a17e67a4a2d2740"),
    "w2a2-center": ("4850c78c7b2284a4d1622033f9a740ad9ae4e8c1b1e359df5ac9894683cf5f7a",
                    "89f6507a5208e5dec51a212fbb24bf51936cef4851196161c90b234326f7f08f"),
    "w2a2-agq": ("d187fbe674457a16ce793673630a06776eed69ecd6850a2ae193877d04acf711",
                 "4b33bb2ffef441551722de32bcae61f59b97025f3e145eefd2b920c9c911091d"),
    "w2a2-ptq4vit": ("1b167dcc88537c916cfc0248249806486a2ed72ecaaddf9c1d58adb64dcce011",
                     "abfd81c70510fb6c7c1518cd264e286445fc7f0813a5185d615e76eacfdc877a"),
    "w2a2-ptq4vit-deploy": ("9d8e73c7df22ab8145c09db9771f2c7cb1eece6edc1d9e392e775efae6c7584d",
                            "3a37f96485a7bb76f9f005cd20b6a5c8613e8a0e90639415d1530bce9db647c9"),
    "w2a2-hessian": ("f49b84d1cd77f44cc4c12b362604274e87962a4491f4b91fa3cc93cd6a38056b",
                     "f7ed8d59ea55d307d1219a422cfa97d9908ce6cc9917f842b765a900a4157406"),
    "w2a2-twin": ("530bae6b2904ebb46e261109228522e5973919ea7b38c469bb9a1193af5a303d",
                  "b009efec26a98f87f9d84755833bad339fcef1f0d37ca657a862b27777410027"),
    "w3a3": ("f70488cadb6d05aed6f4cd5c6ec61b7bf2152518cc3a263d0d9f16c6f406ca56",
             "62ceb149d0d8341116b89d3290324ffe47bf6fe8f1e6c902c915817fb46d7bf4"),
    "w3a3-ptq4sam": ("f1a1fbc4d9d5e91426d8b451ab256d00e4c733c27f9fe4e6002eefefebaee934",
                     "1396fe4d0b3d460f1c9813629f681c7166a59a133577547fef71af24fda4c2d6"),
    "w3a3-big": ("de91e239499496dd153ba9d82305d255b4d4d076bfc58ecfb887031458ece850",
                 "e9113a5474cc9ae4ef72c04268d39ca52f12bb6f4abb0caabf10dbc1ab389280"),
    "w3a3-flip": ("e1fabcf8a2fb314603a720babbf42f3abb7930a4a9d9d60fe942aa9cc037bf53",
                  "16a13b3aaed603fa0c8aeee3638bfe70dca8bb0302958bc72caced92f5a19183"),
    "w3a3-center": ("76d64b855342bd5848ee1b9517a101ebc0d2693db6ea330cd757c89b4968f656",
                    "d746e7cba6583f9015b880bad8662dd4355346f1aea0a830c57ce380dcad6cb3"),
    "w3a3-agq": ("7664a7ed3f03b879aad5a2edbc3206e86f957181a729632e94b94e017990578c",
                 "ebad60c9222c3b042521b508eab136cb5022f10d72ef3810c935c652ffaa103d"),
    "w3a3-ptq4vit": ("fdeb38ece87e6dbc2f55968b570ad1fff25a20a47e5981602a951d202956767f",
                     "57c1bb043a1183808d07c151f6dea7d11f33f63454bfbea2a939a9edf73a10d3"),
    "w3a3-ptq4vit-deploy": ("be25c7693e34684564dd783db8aa4ff1f307536e5aa16b890b46ce44f1fe42ad",
                            "6f081cfb3bc9f97674255ccd2d77d3d96716e58d5fac2bf257c3542851cbf21a"),
    "w3a3-hessian": ("2ef54315d466d43cf4c5c7fdf03d45993c7c5efc9084d70af79ec139d289d767",
                     "ffc805dcf51584544f5febd7feb8cd85b96d03157227763e895f435ea22d5a58"),
    "w3a3-twin": ("27da9fb420ef90a48a01c60f2ac707f35f81ed502840935b3e11bb2ea4a2d583",
                  "d9927d79677b637a321a3cb05314b22d66f295b841fa7598286e71961a610eff"),
    "w4a4": ("02899a3331c6da8d176313fcaf488526bd44048e984ce0a643bfdc68f9e7f16c",
             "305a56c1fa74e00a7406ba2cdf101171963a22fcefd8193287538d264542636c"),
    "w4a4-ptq4sam": ("965a0f33798cf9c8e484a6ee557ca7e4a983829128dc9846c9478624fe326478",
                     "4102541e98f611676d72309f4bd733c3e331b703938373f5a1fdd911d44ad2bc"),
    "w4a4-big": ("a34d383dd7c6787abac4b25c21a582f85f5e1a7dc1602ed3cd103339dcde7963",
                 "7c30731168979f936bb8307aa18b5000d4e50be342a171675d18f17bdbda852d"),
    "w4a4-flip": ("3adc7c11e85a76c45d69b556f9bd5672dcfef765ff453a8d395242c1c2eef565",
                  "b4c3a9a7c664cbd93ccce0dba978d1677ea68b7a56df10b4fb00941c8b4f0c5f"),
    "w4a4-center": ("e46c765a50a614a090f263276d904525a802db5047af240472aedb9500ea5b9f",
                    "da2cfa2bd70097758434a8ed6d03fb1fff2a742da4995a5a9775d9aca226b88d"),
    "w4a4-agq": ("ad1b10304103190be988e305bcdc30e48fe43266f861d1f2aaa34291e8863845",
                 "e7440017f3729dfb5e72b82591b49359665ae28e35471d8ec98400f787306d66"),
    "w4a4-ptq4vit": ("352ff4e52d87991a3a03bd68322a25525211edb1b71f110513bdaa48595bac11",
                     "4ea649393079a84cc54d0ac8f4231742d0c096bd27af37fe7c319522d9efb17a"),
    "w4a4-ptq4vit-deploy": ("e59b14466f5a0aa01391c9e8a0613780149244175a4e45d3b6f7c1679bd7e2bd",
                            "431b828d2c34fbc5177d2cfb062a0bbfabc076537daed10706803c8793666984"),
    "w4a4-hessian": ("a6b724781acf8ddab56684b6ae305bda5d7d0d0a479cd08aa90b59490d7126ab",
                     "905c5fef0dd6b1d2eb93db2c13d61a343be43a2ce51a20ddb83fd2ae706ae6b5"),
    "w4a4-twin": ("653dcc4c0f0be601adb90cfcfffef6209734a61258600fa75f272fac438d8ac4",
                  "5782385a575a5e5c11d0972cbaa109ad72bcc434016c0d86ccc943c59863c26d"),
    "w5a5": ("c70ee20acdeec7a3fe4d2b8d1a18f0a5a1385bbb39c1d40ef5d814f576b01319",
             "ad2c9a4ac48f4819d5d8da415ca8655326784ebfb7bd6dc50c98365ec1fd1e3a"),
    "w5a5-ptq4sam": ("f2a68b5ade9a06bbce8f078d13a8bb8c923ca636567fcf2129912a2b79b7b586",
                     "7dfe76d749a7f6e972a1a51380ece41370f1377cad0a9c7ed147897b1c7eba23"),
    "w5a5-big": ("0362c95478ab1b68b2018cb8aa8a75e4d1b7929cef008bb73c8ba47e49b6e4e1",
                 "20954cf5fdad6c0afb6a91bfbf3a75b6536167c721ec0b199684eb8e84d5663a"),
    "w5a5-flip": ("a132acfb74ed5aa8bf97c21bcd90703ec6213a89b6559eaa460d8ca29b74f972",
                  "443e903f1b62645c5ff114278d8bc19edc0a8da4aa108f7fc2c7e1ae921ccb7a"),
    "w5a5-center": ("6fe6390be068fa25f464cac00afa5e286a0557bffe34dadb0f8dca6c091800ea",
                    "5012cad151ffb5e8c24adde1713ce6f9fc14bacc89d83fe54ed1c47ae5671c54"),
    "w5a5-agq": ("34a92cb1b199337a6a541538f046aba72e70aec525911691cf1c65fae3659d85",
                 "9e20de7c48c25ea21d9bd06d74a9579b540eec428dbfd659a1ac07c0c1ad7566"),
    "w5a5-ptq4vit": ("575744f354bcd356a1500c2b499ff4f65295360adb760e4f06a4e992ff49e15b",
                     "0b2f3e12e522737ef4ffbca4a7c226c5ce92fef75d2f696c17861f6b738b8cdd"),
    "w5a5-ptq4vit-deploy": ("220b65701c74c60e443d525ab8c03e889d919fcda3cdd1a00cf7a609eda168a4",
                            "e6b0cd872dc42aec0b1b705dbe8d81545668cd2cfa34e3e903fc8beb6bb6c811"),
    "w5a5-hessian": ("940926073cc954c96df58ffad577c9346d0e191724bfec3dbfe31d21688f3b63",
                     "b8b1534301448a45bc73015ec9114b7a99498f12570c12a725d05d2a33452616"),
    "w5a5-twin": ("603d8fea6876956545479d94170611126efaa6db72799cd44c855161af309051",
                  "a274055b053f2c657765854ce340ca1a3af27ed025ce5f6a548c76c8d806ab49"),
    "w6a6": ("19f8eb985379a970853287cf8075749034d18e6ff5941459495ff94a87465cfa",
             "df8a1cbcc61febf45be6a82b357afd8c3a106685bd07a08d741010ffa1e36c87"),
    "w6a6-ptq4sam": ("f532db23daf4c3fbddceed3432b4d0a05c05ebb22b9c949866c4f089ce3ed314",
                     "578c1bded48e53a4926cd819e7659f063dbfd8341b12d4d8d6ed1f0bbd162f9e"),
    "w6a6-big": ("4359dbab5fe36c0f0327695d6f1ba34f6893a06899423e0240a266b9ae54bb7c",
                 "f6c30f3d8d05a102e5613c4b7e1f13cbab55c0953931bb87e480fa05883a7197"),
    "w6a6-flip": ("2f4acf957c182321d706311a74839c394bc801d48fe1c0e10bb482e1f64928a0",
                  "d095b707380c966370de3d887acd220267d0ebbf83228fa50223fb5aceb886f9"),
    "w6a6-center": ("7fb16e7329cf4dcc1cb08c83611dab6d270147d171ebd654380c2366074a3752",
                    "63ebe79fd854696d09688dac39ec6983faba7802ef39d2773dc8c34fef03e25a"),
    "w6a6-agq": ("4dbbcb80ab36b8e2a4be74d95d29bcd32a013f2559d311ff8e52c4cd41b4ea53",
                 "dda120bfacf67bb549466bf89eacc63b78eb3f778456d3226ccf69222632eca0"),
    "w6a6-ptq4vit": ("bcfa28a585d48dabfbfcfee76dc96a99de214d30b9483d37f4f6e67c33e0c511",
                     "71c5b1e8bb7aa4857b1cb59e991038be808309edb1419ef6b2d98f842b8dc3e6"),
    "w6a6-ptq4vit-deploy": ("8f5449aa876ede71120f04c5bb1a293d1f65841bff3500f868b74f1a4498b804",
                            "847dc0ab33105eab0bd9b78b185b1dd7423247edd830ad6c8bce88800becf90b"),
    "w6a6-hessian": ("39a6120bf746b2666613ba4a66e041cf5c03066c4e95f4e23735ea149ce4b7df",
                     "13045bbd5b937502892ba3266530185d00a824fdf853c7d200086e1c721b8c74"),
    "w6a6-twin": ("141748ad3150bfd6c40bbf8e6fdd3807f3da85b6a043b25ed0ad95da1d70f847",
                  "e8b35c8864f86ed329cc434c76a97d902dcabfaeb33dbc2f8b8461d9b8966b35"),
    "w7a7": ("d69f5c5684081e72f1d49b7121d290e02fa041db81a467993a6b87d31d58f034",
             "2a774e5d24795e6e2493e4d6b1f95755fdb7d2f0a24ae18217ab7f642201f79f"),
    "w7a7-ptq4sam": ("df668633b8942bf8d7dec352f8da2ec8135acc59b98e57917745f67b42f01137",
                     "720ae7f73dc3a774805fe096db9996acf5cc91ce3adb6695c0b0d6922d64f874"),
    "w7a7-big": ("c42bf9097cc8bcc0892fb690c2d4d63c15cdb406d3e5e36024d97960c335b552",
                 "32c9c779b4e86e96bef85d7d3cea1d7cabf223b1db501d6b18377a4dda9f0043"),
    "w7a7-flip": ("b380690da5b540a578395ffb04f2890c0c1bb4915706cc89393602dc26b3a2cf",
                  "ed43ade1a969f602b0856bbf8f7cfb6196181021abdb6483542705aede0ed256"),
    "w7a7-center": ("63f7ce5010ad55c1cea6548cf4b5e8aa1f58e4a770a8f3151cd2f68b6281eae1",
                    "20466e97026025ed5985281332f2e024a4901953ac266a33c5ba62218f087793"),
    "w7a7-agq": ("b514f8b50bff73e2376c09a5b6b7091be9fb6dc44be029a30ef1013992ddd4e8",
                 "9637ae8c1469d12eea3e6879fdc0264f1e036ecc305ba897e1205c66466dc350"),
    "w7a7-ptq4vit": ("699a017b8aa7c80f9f8954d9dc7245aa919046496a89282545fd11a143447d39",
                     "dcd1931b5b74aa3c426a5fd379726f7e3d18d2c837fe1b0fa42ab235ee73cb0b"),
    "w7a7-ptq4vit-deploy": ("cf218022569a203ae8928057cb00abeab93d4c3ebff95cf4266dd02e2c6b722e",
                            "7fff145adb466f474e9796dbdf8c9676e482e94e6e5b4892b2031554f73abf06"),
    "w7a7-hessian": ("f8712a43d40b31970474216e8f5d6bdba8d5a4a50c989f759fc7eaddbd230c70",
                     "7d5ab329478432ed4676fa3178c42ef2d4ecdb37c248a9f4bf65aba1fec76759"),
    "w7a7-twin": ("f124db34b635ec1b0247ea2684fe1ce954dc7efdb751ae9ee06d8075e80295d5",
                  "352af8ef93aada6725aa4c067fa594f595781f1d9af3fb4d22b1d3c9d63170cd"),
    "w8a8": ("2d3b0bbad686eed33186aefe5aafc6776cd86944169ee0876f8cf84665254ead",
             "2c544a75467ed613086ed9c53922bf19c7bdd44548cb4a32f1b245a51c7fce01"),
    "w8a8-ptq4sam": ("4840ed6522833d14b8655a85f68d6ea979c25b80faf2b328f76bba5052cc2878",
                     "9bcfcd3cba38322b25e2bfee76f7e44a20d4128d95a801671285d51d8ceceeb2"),
    "w8a8-big": ("6a8d3ea2e7d06b342808befe318454b30fac512f07e8f7ab41a4c7c0538d2077",
                 "8368782aa39ea336e52443991658ea95fd6dbe61b70b5ba3c09477e862778c18"),
    "w8a8-flip": ("f34a91253ee26432628b0d821b78e7d01c01bf8b7fa027cc91d1edf4988bc846",
                  "946c20a22a225aa74b61306c935dac37ff35ebe5bb6a907f5dc18e45bd48c478"),
    "w8a8-center": ("962a9517ed93c2bbb0288d0cfda27d47fabd3e2d39f9fd5909720019b31c0eb5",
                    "8ba970587eb7a86b75f3a901cd36814843c710be9f614d89928f829491a5647d"),
    "w8a8-agq": ("4dfca26a2899352c01e7658de468c43148e4618b05d3dbc8fad1b3b41e6f6612",
                 "b491f868b54b42d4006b8d0cc67baf031d2b7b8eedc1b7fb7d190ab0416174fa"),
    "w8a8-ptq4vit": ("5963392242bd7068b3a854048bd20cc48e887ae5888664562b2b480dda1a7e4e",
                     "afa6f983276a4337b5d2d33cb7b347a8d9b909710ea3e44c2a5f367ead21dcd4"),
    "w8a8-ptq4vit-deploy": ("ee9fc8c9a4ffb325d8fd3017dc1ab0cac36fa56465cba6246c06238f5217a963",
                            "955630fe73aca294de9bf58b2af765708130d811dde7ec427e37bcd9f4fde867"),
    "w8a8-hessian": ("58752d773d4bd2cb02ce1f56ecd0a9d2cd0cce2ec4d610da9dd9c44adb297368",
                     "25743cef7f94b4282af60f0010334e5165f33264d9678db41d9d930ce3b1a541"),
    "w8a8-twin": ("01f105dbd9a0b57d225c8e849746f4a6b5b09928077e7ee8b07550e9fda81fd5",
                  "09c3f7f69d968dfbca12526d6308333b9565fa4f438760a96f8393eb3626ab02"),
}

SAM_MODELS = [name for name in model_names() if get_spec(name).adapter == "sam"]


def test_every_preset_and_every_sam_model_is_covered():
    assert set(EXPECTED) == {"fp16"} | {n for b in range(2, 9) for n in variant_names(b)}
    assert set(SAM_MODELS) == {
        "litemedsam", "litemedsam-bimodal", "mobile_sam", "sam_vit_b", "sam_vit_h", "sam_vit_l",
        "tiny_litemedsam", "tiny_litemedsam-bimodal", "tiny_mobile_sam", "tiny_sam_vit"}


@pytest.mark.parametrize("model", SAM_MODELS)
def test_sam_presets_resolve_as_before_adapters(model):
    rules = adapter_for(model).rules
    for name, (tensorrt, onnxruntime) in EXPECTED.items():
        recipe = get_recipe(name, rules)
        assert recipe.sha256() == tensorrt, name
        assert recipe.for_target("onnxruntime", rules).sha256() == onnxruntime, name
        assert recipe_from_dict(recipe.to_dict()).sha256() == tensorrt, name
